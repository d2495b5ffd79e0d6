"""The sim board's services: a private dockerd, a swtpm TPM 2.0 simulator and a SoftHSM2 token.

Each service lives in its own state directory and records its process id there, so the same
classes serve pytest's session fixtures (tests/conftest.py) and `build.py sim start|stop|status`,
where one command starts a service and a later one stops it. Standard library only: build.py
imports this module before any virtualenv exists.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.peers.waiting import WaitTimeout, log_tail, pid_gone, wait_for_exit, wait_until

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
            port = first.getsockname()[1]
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
        self._process.stop()

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


class SimBoard:
    """All sim services under one directory (`.sim/` for build.py) plus the config file for them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dockerd = Dockerd(self.root / "docker")
        self.swtpm = Swtpm(self.root / "swtpm")
        self.softhsm = SoftHsm(self.root / "softhsm")
        self.data_dir = self.root / "data"
        self.run_dir = self.root / "run"
        self.config_file = self.root / "config.toml"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        started = []
        try:
            for service in (self.softhsm, self.swtpm, self.dockerd):
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
        for service in (self.dockerd, self.swtpm, self.softhsm):
            service.stop()

    def status(self) -> dict[str, bool]:
        return {
            "dockerd": self.dockerd.running(),
            "swtpm": self.swtpm.running(),
            "softhsm": self.softhsm.running(),
        }

    def write_config(self) -> Path:
        self.config_file.write_text(
            "# The sim board's configuration, written by `build.py sim start`.\n"
            "[paths]\n"
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
            f'tcti = "{self.swtpm.tcti}"\n'
            "\n[keys.pkcs11]\n"
            f'module = "{self.softhsm.module}"\n'
            f'token_label = "{self.softhsm.token_label}"\n'
            f'pin = "{self.softhsm.user_pin}"\n'
        )
        self.config_file.chmod(0o600)
        return self.config_file
