"""Threat: a secret of the configuration (a token PIN, a hierarchy password, a symmetric key, a
connection string, a PIN inside a PKCS#11 URI) reaches someone who may read the gateway's output
but not its config: a technician's screen, a support ticket with `config validate`'s answer, the
journal, `/system/logs` on the management socket.

The real program is run with distinctive secrets planted, and every output is searched for them:
`config validate` and `config show` (stdout and stderr), `edgekeeper run` when start-up fails on
them, and, for secrets good enough to start with, the running daemon's log, `GET /system/logs`,
`system logs`, `status` and the log of a reload that fails on them. A config file holding a secret
that its group or others may read is refused, with the fix named; 0600 is accepted.
"""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.peers.program import cli_argv, daemon_argv, program_env
from tests.peers.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

#: Broken settings that stop the program, each with the secret text that must never show and the
#: key the problem must still name.
BROKEN = {
    "pin-as-integer": ("[keys.pkcs11]\npin = 987654321\n", "987654321", "keys.pkcs11.pin"),
    "owner-password-as-integer": (
        "[tpm.hierarchy_authorization]\nowner = 55512345\n",
        "55512345",
        "tpm.hierarchy_authorization.owner",
    ),
    "symmetric-key-not-base64": (
        '[provisioning]\nsource = "dps"\nid_scope = "0ne00000000"\n'
        '[provisioning.attestation]\nmethod = "symmetric_key"\nregistration_id = "gw"\n'
        'symmetric_key = { value = "QZ7SYMKEY!!not-base64-at-all" }\n',
        "QZ7SYM",
        "provisioning.attestation.symmetric_key.value",
    ),
    "symmetric-key-given-bare": (
        '[provisioning]\nsource = "manual"\niothub_hostname = "hub.example"\ndevice_id = "gw"\n'
        '[provisioning.authentication]\nmethod = "sas"\n'
        'device_id_pk = "QZ7BAREKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="\n',
        "QZ7BARE",
        "provisioning.authentication.device_id_pk",
    ),
    "connection-string-bad-key": (
        '[provisioning]\nsource = "manual"\n'
        'connection_string = "HostName=hub.example;DeviceId=gw;SharedAccessKey=QZ7SAK!!bad"\n',
        "QZ7SAK",
        "provisioning.connection_string",
    ),
    "pin-value-in-a-checked-uri": (
        '[console]\ndevice = "pkcs11:token=edge;object=id?pin-value=QZ7URIPIN"\n',
        "QZ7URIPIN",
        "console.device",
    ),
    "pin-value-in-a-mistyped-uri": (
        '[tpm]\nauth_key_index = "pkcs11:object=id?pin-value=QZ7URIPIN"\n',
        "QZ7URIPIN",
        "tpm.auth_key_index",
    ),
}


def write_config(directory: Path, text: str, mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{directory}/data"\nrun_dir = "{directory}/run"\n' + text
    )
    config.chmod(mode)
    return config


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_argv(), "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=program_env(),
    )


def run_daemon(config: Path) -> subprocess.CompletedProcess[str]:
    """`edgekeeper run` on a config it must refuse: it exits at once."""
    return subprocess.run(
        [*daemon_argv(), "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=program_env(),
    )


def outputs(*done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(part for d in done for part in (d.stdout, d.stderr))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_secret_never_shows_in_check_show_or_start_up(tmp_path: Path, case: str) -> None:
    text, secret, key = BROKEN[case]
    config = write_config(tmp_path, text)
    checked = cli(config, "config", "validate")
    shown = cli(config, "config", "show")
    started = run_daemon(config)
    assert checked.returncode == 1 and shown.returncode == 1 and started.returncode == 1
    for done in (checked, shown, started):
        assert key in done.stdout + done.stderr, done
    assert secret not in outputs(checked, shown, started)
    if "uri" in case:  # the URI itself is in the message, its PIN redacted
        assert "pin-value=<redacted>" in checked.stdout + checked.stderr
    assert not (tmp_path / "run").exists()  # refused before the daemon made anything


def test_a_config_holding_secrets_that_others_may_read_is_refused(tmp_path: Path) -> None:
    text = '[keys.pkcs11]\nmodule = "/usr/lib/libtoken.so"\ntoken_label = "edge"\npin = "QZ7PIN"\n'
    config = write_config(tmp_path, text, mode=0o644)
    checked = cli(config, "config", "validate")
    started = run_daemon(config)
    for done in (checked, started):
        assert done.returncode == 1
        said = done.stdout + done.stderr
        assert f"{config}:" in said and "keys.pkcs11.pin" in said and "mode 0644" in said
        assert f"chmod 600 {config}" in said
    assert "QZ7PIN" not in outputs(checked, started)
    config.chmod(0o640)
    assert "mode 0640" in run_daemon(config).stderr  # root's group may not read it either
    config.chmod(0o600)
    accepted = cli(config, "config", "validate")
    assert accepted.returncode == 0, accepted.stderr
    assert "configuration is valid" in accepted.stdout


#: Secrets good enough to start with; the daemon runs, logs at debug level, and fails to use some.
RUNNING_SECRETS = {
    "QZ7RUNPIN": '[keys.pkcs11]\nmodule = "/nonexistent/libtoken.so"\ntoken_label = "edge"\n'
    'pin = "QZ7RUNPIN"\n',
    "QZ7OWNERPW": '[tpm.hierarchy_authorization]\nowner = "QZ7OWNERPW"\n',
    "QZ7URIPIN": '[edge_ca]\ncert = "file://{edge_ca_cert}"\n'
    'pk = "pkcs11:token=edge?pin-value=QZ7URIPIN"\n',
    "QZ7SAKRUNAAAAAA": '[provisioning]\nsource = "manual"\n'
    'connection_string = "HostName=hub.example;DeviceId=gw;SharedAccessKey=QZ7SAKRUNAAAAAA="\n',
    "QZ7REGPW": '[agent.config.auth]\nserveraddress = "registry.example"\nusername = "u"\n'
    'password = "QZ7REGPW"\n',
}


def system_logs(running) -> str:
    """`GET /system/logs` on the management socket: the whole answer, as it leaves the daemon."""
    answer = running.raw("GET", "/system/logs?lines=500").decode(errors="replace")
    assert answer.startswith("HTTP/1.1 200"), answer[:200]
    return answer


def self_signed_ca(path: Path) -> Path:
    """A PEM CA certificate, so the certificate service gets as far as `[edge_ca] pk`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leak test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    return path


def start_with_secrets(gateway, tmp_path: Path):
    """A gateway whose config holds every running secret, once its certificate service has
    failed on the PKCS#11 URI (with its PIN) of `[edge_ca] pk`."""
    ca = self_signed_ca(tmp_path / "edge-ca.pem")
    settings = "".join(RUNNING_SECRETS.values()).replace("{edge_ca_cert}", str(ca))
    running = gateway('[logging]\nlevel = "debug"\n' + settings)
    wait_until(
        lambda: "[edge_ca] pk" in running.log,
        timeout_s=30,
        what="the certificate service to fail on [edge_ca] pk",
    )
    return running


def assert_no_secret(*texts: str) -> None:
    for index, text in enumerate(texts):
        for secret in (*RUNNING_SECRETS, "987654321"):
            assert secret not in text, (index, secret, text[-2000:])


@pytest.mark.docker
def test_a_running_gateway_never_logs_or_shows_its_secrets(gateway, tmp_path: Path) -> None:
    running = start_with_secrets(gateway, tmp_path)
    shown = outputs(
        running.cli("config", "show"),
        running.cli("config", "show", "--format", "json", "--sources"),
    )
    assert "<redacted>" in shown and "pin-value=<redacted>" in shown
    assert_no_secret(
        running.log,
        system_logs(running),
        outputs(running.cli("system", "logs", "--lines", "500")),
        shown,
    )
    assert "pin-value=***" in running.log  # the failure was logged, its PIN hidden

    config = running.config.read_text()
    running.config.write_text(config.replace('pin = "QZ7RUNPIN"', "pin = 987654321"))
    assert running.process is not None
    running.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "configuration not reloaded" in running.log, timeout_s=30, what="reload refused"
    )
    assert "keys.pkcs11.pin" in running.log
    assert_no_secret(running.log, system_logs(running))


@pytest.mark.docker
def test_a_running_gateway_never_shows_its_secrets_in_status(gateway, tmp_path: Path) -> None:
    running = start_with_secrets(gateway, tmp_path)
    assert_no_secret(outputs(running.cli("status")), running.raw("GET", "/system/status").decode())
