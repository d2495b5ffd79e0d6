"""The sim board's services: a private dockerd, a swtpm TPM 2.0 simulator, a SoftHSM2 token and
the cloud (a DPS and an IoT hub, tests/peers/cloud.py, run as a program).

Each service lives in its own state directory and records its process id there, so the same
classes serve pytest's session fixtures (tests/conftest.py) and `build.py sim start|stop|status`,
where one command starts a service and a later one stops it. Standard library only: build.py
imports this module before any virtualenv exists (the cloud program runs under the venv's python).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.peers.waiting import WaitTimeout, log_tail, pid_gone, wait_for_exit, wait_until

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
KILL_TIMEOUT_S = 5.0


class MissingComponent(RuntimeError):
    """A program or library the sim board needs is not installed; the message names the package."""


class ServiceFailed(RuntimeError):
    """A sim service did not come up; the message points at its log."""


def require_program(name: str, package: str) -> str:
    """Absolute path of program `name`, or MissingComponent naming the Debian package."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise MissingComponent(
            f"{name} is not installed: install the Debian package {package} "
            f"(apt-get install {package}, or run `python3 build.py setup`)"
        )
    return path


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P such that P and P+1 are both free on `host` right now."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
                return port
    raise ServiceFailed(f"no two consecutive free TCP ports on {host}")


class BackgroundProcess:
    """A detached process whose pid lives in `<dir>/<name>.pid` and whose output goes to a log."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.state_dir = Path(state_dir)
        self.name = name
        self.pidfile = self.state_dir / f"{name}.pid"
        self.log = self.state_dir / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid
        return pid is not None and not pid_gone(pid)

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{self._popen.pid}\n")

    def exited(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is not None
        return not self.running()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
        """Send `sig`, and SIGKILL to the process group when that does not end it in `timeout`."""
        pid = self.pid
        if pid is not None and not pid_gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            try:
                wait_for_exit(pid, timeout_s=timeout, what=f"{self.name} to stop")
            except WaitTimeout:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGKILL)
                try:
                    wait_for_exit(pid, timeout_s=KILL_TIMEOUT_S, what=f"{self.name} to die")
                except WaitTimeout as error:
                    raise ServiceFailed(f"{self.name} (pid {pid}) survives SIGKILL") from error
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=KILL_TIMEOUT_S)
            self._popen = None
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def wait_ready(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait until `ready()`; ServiceFailed with the log when the process exits or time is up."""

        def up() -> bool:
            if self.exited():
                raise ServiceFailed(
                    f"{what} exited during start-up; log {self.log}:\n{log_tail(self.log)}"
                )
            return ready()

        try:
            wait_until(up, timeout_s=timeout, what=what)
        except WaitTimeout as error:
            raise ServiceFailed(
                f"{what} not ready after {timeout:.0f} s; log {self.log}"
            ) from error


class Dockerd:
    """A private dockerd: vfs storage, no bridge, no iptables, its own socket and data root."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.socket = self.dir / "docker.sock"
        self.uri = f"unix://{self.socket}"
        self._process = BackgroundProcess(self.dir, "dockerd")

    def running(self) -> bool:
        return self._process.running() and self._ping()

    def start(self) -> None:
        if self.running():
            return
        dockerd = require_program("dockerd", "docker.io")
        require_program("docker", "docker.io")
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._process.spawn(
            [
                dockerd,
                "--host",
                self.uri,
                "--data-root",
                str(self.dir / "root"),
                "--exec-root",
                str(self.dir / "exec"),
                "--pidfile",
                str(self.dir / "dockerd.daemon.pid"),
                "--storage-driver",
                "vfs",
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
            ],
            env=self._env(),
        )
        self._process.wait_ready(self._ping, f"dockerd ({self.socket})", START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the engine, first removing the networks made on it that no container uses (the
        modules' bridge network): a bridge lives in the host's network namespace and outlives the
        engine, and each one holds an address pool later engines can no longer allocate."""
        if self.running():
            self.docker("network", "prune", "-f", check=False)
        self._process.stop()
        self._unmount_leftovers()

    def _unmount_leftovers(self) -> None:
        """Unmount what the engine left mounted under its directory (the network namespace it
        bind-mounts into its exec root, when it did not get to unmount it): a directory holding
        a mount cannot be deleted, and pytest then fails a later session cleaning its old ones."""
        prefix = f"{self.dir.resolve()}/"
        with open("/proc/self/mountinfo", encoding="utf-8") as table:
            points = [line.split()[4] for line in table]
        for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True, timeout=10)

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(2)
                conn.connect(str(self.socket))
                conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                answer = conn.recv(4096)
        except OSError:
            return False
        return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.uri
        env["DOCKER_CONFIG"] = str(self.dir / "cli")
        return env

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; text output; raises on failure when `check`."""
        docker = require_program("docker", "docker.io")
        result = subprocess.run(
            [docker, *args],
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def remove_containers(self, label: str) -> None:
        """Remove (forcibly) every container carrying `label` (`KEY` or `KEY=VALUE`)."""
        found = self.docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
        if found:
            self.docker("rm", "-f", *found, check=False)

    def import_image(self, rootfs_dir: Path, tag: str) -> str:
        """`docker import` the directory tree `rootfs_dir` as image `tag`; returns the tag."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for entry in sorted(Path(rootfs_dir).iterdir()):
                tar.add(entry, arcname=entry.name)
        docker = require_program("docker", "docker.io")
        result = subprocess.run(
            [docker, "import", "-", tag],
            input=buffer.getvalue(),
            capture_output=True,
            env=self._env(),
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceFailed(f"docker import {tag} failed: {result.stderr.decode().strip()}")
        return tag


def busybox_rootfs(target: Path) -> Path:
    """A minimal rootfs in `target`: the static busybox as /bin/busybox plus applet links."""
    busybox = require_program("busybox", "busybox-static")
    kind = subprocess.run(["ldd", busybox], capture_output=True, text=True, check=False)
    if "not a dynamic executable" not in kind.stdout + kind.stderr:
        raise MissingComponent(
            f"{busybox} is dynamically linked: install the Debian package busybox-static"
        )
    bin_dir = target / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, bin_dir / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = bin_dir / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    for name in ("tmp", "etc", "proc", "sys", "dev", "run"):
        (target / name).mkdir(exist_ok=True)
    (target / "tmp").chmod(0o1777)
    return target


class Swtpm:
    """A swtpm TPM 2.0 simulator on loopback TCP ports (server P, control P+1)."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1") -> None:
        self.dir = Path(state_dir)
        self.host = host
        self._process = BackgroundProcess(self.dir, "swtpm")
        self._portfile = self.dir / "swtpm.port"

    @property
    def port(self) -> int:
        try:
            return int(self._portfile.read_text().strip())
        except (OSError, ValueError):
            return 0

    @property
    def ctrl_port(self) -> int:
        return self.port + 1

    @property
    def tcti(self) -> str:
        return f"swtpm:host={self.host},port={self.port}"

    @property
    def url(self) -> str:
        """The simulator as a device URL (`[tpm] device`)."""
        return f"swtpm://{self.host}:{self.port}"

    def running(self) -> bool:
        return self._process.running() and self._accepts()

    def start(self) -> None:
        if self.running():
            return
        swtpm = require_program("swtpm", "swtpm")
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            port = self.port or free_port_pair(self.host)
            self._portfile.write_text(f"{port}\n")
            self._process.spawn(
                [
                    swtpm,
                    "socket",
                    "--tpm2",
                    "--server",
                    f"type=tcp,port={port},bindaddr={self.host}",
                    "--ctrl",
                    f"type=tcp,port={port + 1},bindaddr={self.host}",
                    "--tpmstate",
                    f"dir={self.dir / 'state'}",
                    "--flags",
                    "not-need-init,startup-clear",
                ]
            )
            try:
                self._process.wait_ready(self._accepts, f"swtpm (port {port})", START_TIMEOUT_S)
                return
            except ServiceFailed:
                self._process.stop()
                self._portfile.unlink(missing_ok=True)
        raise ServiceFailed(f"swtpm did not start; log {self._process.log}")

    def _accepts(self) -> bool:
        """Both ports take connections: the control one alone does not mean a TCTI can connect."""
        try:
            for port in (self.ctrl_port, self.port):
                with socket.create_connection((self.host, port), timeout=1):
                    pass
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self._process.stop()

    def restart(self) -> None:
        """Power-cycle: kill swtpm and start it again on the same state and ports."""
        self._process.stop(sig=signal.SIGKILL)
        self.start()


@dataclass(frozen=True)
class SoftHsmToken:
    label: str
    slot: int
    user_pin: str
    so_pin: str


SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/arm-linux-gnueabihf/softhsm/libsofthsm2.so",
)


class SoftHsm:
    """A SoftHSM2 installation with a private SOFTHSM2_CONF and token directory."""

    def __init__(
        self,
        state_dir: Path,
        token_label: str = "edgekeeper",
        user_pin: str = "1234",
        so_pin: str = "123456",
    ) -> None:
        self.dir = Path(state_dir)
        self.conf = self.dir / "softhsm2.conf"
        self.token_dir = self.dir / "tokens"
        self.token_label = token_label
        self.user_pin = user_pin
        self.so_pin = so_pin

    @property
    def module(self) -> str:
        for candidate in SOFTHSM_MODULE_CANDIDATES:
            if Path(candidate).exists():
                return candidate
        raise MissingComponent(
            "libsofthsm2.so not found: install the Debian package softhsm2 "
            "(apt-get install softhsm2)"
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SOFTHSM2_CONF"] = str(self.conf)
        return env

    def running(self) -> bool:
        return self.conf.exists() and self._has_token(self.token_label)

    def start(self) -> None:
        """Write the private configuration and initialise the main token (once)."""
        require_program("softhsm2-util", "softhsm2")
        self.module  # noqa: B018 - fails early naming the package
        self.token_dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"directories.tokendir = {self.token_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        if not self._has_token(self.token_label):
            self.new_token(self.token_label)

    def stop(self) -> None:
        """Nothing runs in the background: SoftHSM2 is a library loaded by its callers."""

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _util(self, *args: str) -> subprocess.CompletedProcess[str]:
        util = require_program("softhsm2-util", "softhsm2")
        return subprocess.run(
            [util, *args], capture_output=True, text=True, env=self.env(), check=False
        )

    def _has_token(self, label: str) -> bool:
        shown = self._util("--show-slots")
        return any(
            line.split(":", 1)[1].strip() == label
            for line in shown.stdout.splitlines()
            if line.strip().startswith("Label:")
        )

    def new_token(self, label: str) -> SoftHsmToken:
        """Initialise a token `label` in the next free slot with this installation's PINs."""
        result = self._util(
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            self.user_pin,
            "--so-pin",
            self.so_pin,
        )
        if result.returncode != 0:
            raise ServiceFailed(
                f"softhsm2-util --init-token {label} failed: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        words = result.stdout.replace(".", " ").split()
        slot = int(words[-1]) if words and words[-1].isdigit() else -1
        return SoftHsmToken(label=label, slot=slot, user_pin=self.user_pin, so_pin=self.so_pin)


ATTESTATIONS = ("symmetric_key", "tpm")  # how the sim gateway may attest to the sim's DPS
TPM_TRANSPORTS = ("swtpm", "tis-i2c", "tis-spi")  # how the sim gateway reaches its swtpm
SIM_ID_SCOPE = "0ne00000517"
SIM_REGISTRATION = "sim-gateway"  # enrolled with a symmetric key
SIM_TPM_REGISTRATION = "sim-gateway-tpm"  # enrolled for TPM attestation, EK trusted on first use


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports free on `host` right now."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass(frozen=True)
class SimEnrollment:
    """What the sim's DPS knows of the gateway and where it listens, chosen once and kept, so the
    identity the gateway caches stays valid across restarts. Its document is the cloud program's
    --config file (tests/peers/cloud.py)."""

    symmetric_key: str
    dps_port: int
    hub_port: int

    @classmethod
    def new(cls) -> SimEnrollment:
        dps_port, hub_port = free_ports(2)
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        return cls(symmetric_key=key, dps_port=dps_port, hub_port=hub_port)

    @classmethod
    def from_document(cls, doc: dict[str, object]) -> SimEnrollment:
        individual = doc["individual"]
        hub_ports = doc["hub_ports"]
        if not (isinstance(individual, dict) and isinstance(hub_ports, list)):
            raise ValueError("individual must be an object and hub_ports a list")
        return cls(
            symmetric_key=str(individual[SIM_REGISTRATION]),
            dps_port=int(str(doc["dps_port"])),
            hub_port=int(hub_ports[0]),
        )

    def document(self) -> dict[str, object]:
        return {
            "id_scope": SIM_ID_SCOPE,
            "individual": {SIM_REGISTRATION: self.symmetric_key},
            "tpm": {SIM_TPM_REGISTRATION: "trust_first"},
            "hubs": 1,
            "dps_port": self.dps_port,
            "hub_ports": [self.hub_port],
        }


class CloudPeersService:
    """The sim's cloud: `python -m tests.peers.cloud` in the background, a DPS and one IoT hub on
    loopback HTTPS with their test CA, state and enrollment kept in `state_dir`. `python` must
    have the test dependencies (cryptography): the venv's interpreter."""

    def __init__(self, state_dir: Path, python: str | Path = sys.executable) -> None:
        self.dir = Path(state_dir)
        self.python = str(python)
        self.enrollment_file = self.dir / "enrollment.json"
        self.peers_file = self.dir / "peers.json"
        self.ca_file = self.dir / "ca.pem"
        self._process = BackgroundProcess(self.dir, "cloud")

    def enrollment(self) -> SimEnrollment:
        """The enrollment kept in the state dir, made (key and ports) on first use; 0600."""
        if self.enrollment_file.exists():
            try:
                return SimEnrollment.from_document(json.loads(self.enrollment_file.read_text()))
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise ServiceFailed(
                    f"{self.enrollment_file} is damaged ({error}): remove it to enroll the sim "
                    "gateway again (its cached identity is then provisioned afresh)"
                ) from error
        enrollment = SimEnrollment.new()
        self.dir.mkdir(parents=True, exist_ok=True)
        temporary = self.enrollment_file.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(enrollment.document(), out, indent=2)
        os.replace(temporary, self.enrollment_file)
        return enrollment

    @property
    def dps_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.enrollment().dps_port}"

    @property
    def hub(self) -> str:
        return f"127.0.0.1:{self.enrollment().hub_port}"

    @property
    def id_scope(self) -> str:
        return SIM_ID_SCOPE

    def peers(self) -> dict[str, object] | None:
        """What the running program wrote to peers.json, or None when it is not this one's."""
        try:
            doc = json.loads(self.peers_file.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("pid") == self._process.pid else None

    def running(self) -> bool:
        return self._process.running() and self.peers() is not None and self._accepts()

    def start(self) -> None:
        if self.running():
            return
        enrollment = self.enrollment()
        self._process.stop()
        with contextlib.suppress(FileNotFoundError):
            self.peers_file.unlink()
        self._process.spawn(
            [
                self.python,
                "-m",
                "tests.peers.cloud",
                "--state-dir",
                str(self.dir),
                "--config",
                str(self.enrollment_file),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        what = f"the cloud peers (DPS on port {enrollment.dps_port}, hub on {enrollment.hub_port})"
        self._process.wait_ready(lambda: self.peers() is not None, what, START_TIMEOUT_S)

    def stop(self) -> None:
        self._process.stop()

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.enrollment().dps_port), timeout=1):
                return True
        except OSError:
            return False


class BusTpmService:
    """The swtpm behind register-level I²C and SPI TPM simulators on bus sockets
    (`python -m tests.peers.bus_tpm`), so the gateway can drive a TPM over TIS itself."""

    def __init__(self, state_dir: Path, swtpm: Swtpm, python: str | Path) -> None:
        self.dir = Path(state_dir)
        self.swtpm = swtpm
        self.python = python
        self.i2c = self.dir / "i2c.sock"
        self.spi = self.dir / "spi.sock"
        self._process = BackgroundProcess(self.dir, "bus-tpm")

    def url(self, transport: str) -> str:
        """The device URL of the simulated TPM on `transport` ("tis-i2c" or "tis-spi")."""
        return f"{transport}://{self.i2c if transport == 'tis-i2c' else self.spi}"

    def running(self) -> bool:
        return self._process.running() and self.i2c.exists() and self.spi.exists()

    def start(self) -> None:
        if self.running():
            return
        self._process.stop()
        self._process.spawn(
            [
                str(self.python),
                "-m",
                "tests.peers.bus_tpm",
                "--i2c",
                str(self.i2c),
                "--spi",
                str(self.spi),
                "--swtpm",
                f"{self.swtpm.host}:{self.swtpm.port}",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self._process.wait_ready(self.running, "the I²C and SPI TPM simulators", START_TIMEOUT_S)

    def stop(self) -> None:
        self._process.stop()


class SimBoard:
    """All sim services under one directory (`.sim/` for build.py) plus the config file for them:
    the gateway provisions through the sim's DPS with `attestation` (one of ATTESTATIONS)."""

    def __init__(
        self,
        root: Path,
        *,
        attestation: str = "symmetric_key",
        tpm: str = "swtpm",
        python: str | Path = sys.executable,
    ) -> None:
        if attestation not in ATTESTATIONS:
            raise ValueError(f"attestation {attestation!r} is not one of {ATTESTATIONS}")
        if tpm not in TPM_TRANSPORTS:
            raise ValueError(f"tpm {tpm!r} is not one of {TPM_TRANSPORTS}")
        self.root = Path(root)
        self.attestation = attestation
        self.tpm = tpm
        self.dockerd = Dockerd(self.root / "docker")
        self.swtpm = Swtpm(self.root / "swtpm")
        self.bus_tpm = BusTpmService(self.root / "bus-tpm", self.swtpm, python)
        self.softhsm = SoftHsm(self.root / "softhsm")
        self.cloud = CloudPeersService(self.root / "cloud", python)
        self.data_dir = self.root / "data"
        self.run_dir = self.root / "run"
        self.config_file = self.root / "config.toml"

    @property
    def registration_id(self) -> str:
        """The DPS registration id, which the DPS makes the device id on the hub."""
        return SIM_TPM_REGISTRATION if self.attestation == "tpm" else SIM_REGISTRATION

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        started = []
        try:
            for service in (self.softhsm, self.swtpm, self.bus_tpm, self.cloud, self.dockerd):
                service.start()
                started.append(service)
        except BaseException:
            for service in reversed(started):
                service.stop()
            raise
        # 0700 whatever the umask: the daemon refuses a run or data dir others may write.
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        self.write_config()

    def stop(self) -> None:
        for service in (self.dockerd, self.cloud, self.bus_tpm, self.swtpm, self.softhsm):
            service.stop()

    def status(self) -> dict[str, bool]:
        return {
            "dockerd": self.dockerd.running(),
            "swtpm": self.swtpm.running(),
            "bus-tpm": self.bus_tpm.running(),
            "softhsm": self.softhsm.running(),
            "cloud": self.cloud.running(),
        }

    @property
    def tpm_url(self) -> str:
        """The device URL the gateway reaches the swtpm by: its socket, or a simulated bus."""
        return self.swtpm.url if self.tpm == "swtpm" else self.bus_tpm.url(self.tpm)

    def write_config(self) -> Path:
        self.config_file.write_text(
            "# The sim board's configuration, written by `build.py sim start`.\n"
            f'trust_bundle_cert = "file://{self.cloud.ca_file}"\n'
            "\n[paths]\n"
            f'data_dir = "{self.data_dir}"\n'
            f'run_dir = "{self.run_dir}"\n'
            "\n[logging]\n"
            'level = "info"\n'
            'format = "text"\n'
            "\n[console]\n"
            'device = "pty"\n'
            "\n[listen]\n"
            f'management_uri = "unix://{self.run_dir / "mgmt.sock"}"\n'
            "\n[connect]\n"
            f'management_uri = "unix://{self.run_dir / "mgmt.sock"}"\n'
            "\n[runtime]\n"
            f'uri = "{self.dockerd.uri}"\n'
            "\n[tpm]\n"
            f'device = "{self.tpm_url}"\n'
            "\n[keys.pkcs11]\n"
            f'module = "{self.softhsm.module}"\n'
            f'token_label = "{self.softhsm.token_label}"\n'
            f'pin = "{self.softhsm.user_pin}"\n'
            f"\n{self._provisioning_toml()}"
        )
        self.config_file.chmod(0o600)
        return self.config_file

    def _provisioning_toml(self) -> str:
        """`[provisioning]` through the sim's DPS with this board's attestation."""
        attestation = (
            'method = "tpm"\n'
            if self.attestation == "tpm"
            else 'method = "symmetric_key"\n'
            f'symmetric_key = {{ value = "{self.cloud.enrollment().symmetric_key}" }}\n'
        )
        return (
            "[provisioning]\n"
            'source = "dps"\n'
            f'global_endpoint = "{self.cloud.dps_endpoint}"\n'
            f'id_scope = "{self.cloud.id_scope}"\n'
            "\n[provisioning.attestation]\n"
            f"{attestation}"
            f'registration_id = "{self.registration_id}"\n'
        )
