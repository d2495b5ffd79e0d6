"""Unix sockets for the local APIs: where a `unix://` or `fd://` URI points, binding with the
configured mode and group, replacing a stale socket file only when nothing answers on it, and the
peer credentials of a connection (SO_PEERCRED, with a pidfd that pins the process).

A socket is bound in a private directory (0700, made for it in a staging directory only the daemon
can write), given its mode and group there, then renamed into place. So it is never reachable with
the wrong permissions, a stale file is replaced in one step, and nothing is ever changed through a
name in the socket's own directory, which a module may see: rename(2) replaces whatever is at the
target name, a symlink included, and follows nothing.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from firmware.api.model import PeerCredentials
from firmware.errors import ConfigError, DaemonError

# sun_path holds 108 bytes including the terminating NUL.
_MAX_PATH = 107
# The socket's name in its private staging directory.
_BOUND = "s"
_PEERCRED = struct.Struct("3i")


@dataclass(frozen=True)
class SocketAddress:
    """A parsed listen or connect URI: a filesystem path, or a systemd-passed descriptor name."""

    uri: str
    path: str | None = None
    fd_name: str | None = None


def parse_socket_uri(uri: str, *, key: str = "listen.management_uri") -> SocketAddress:
    """`unix:///run/edgekeeper/mgmt.sock` or `fd://name`; `ConfigError` naming `key` otherwise."""
    if uri.startswith("unix://"):
        path = uri[len("unix://") :]
        if not path.startswith("/"):
            raise ConfigError(
                f"{key}: {uri!r} must name an absolute path",
                hint="write unix:///run/edgekeeper/mgmt.sock (three slashes)",
            )
        if len(os.fsencode(path)) > _MAX_PATH:
            raise ConfigError(
                f"{key}: socket path {path} is longer than {_MAX_PATH} bytes",
                hint="choose a shorter run directory",
            )
        return SocketAddress(uri, path=path)
    if uri.startswith("fd://") and len(uri) > len("fd://"):
        return SocketAddress(uri, fd_name=uri[len("fd://") :])
    raise ConfigError(
        f"{key}: unsupported socket URI {uri!r}",
        hint="use unix:///path/to.sock or fd://NAME (systemd socket activation)",
    )


@dataclass(frozen=True)
class SocketFile:
    """The file a bound socket lives at, recorded so that only ours is ever removed."""

    path: str
    device: int
    inode: int
    changed_ns: int

    def remove(self) -> None:
        """Unlink the socket file if it is still the one we bound (nobody replaced it)."""
        try:
            present = os.lstat(self.path)
        except FileNotFoundError:
            return
        identity = (present.st_dev, present.st_ino, present.st_ctime_ns)
        if stat.S_ISSOCK(present.st_mode) and identity == (
            self.device,
            self.inode,
            self.changed_ns,
        ):
            os.unlink(self.path)


def bind_unix_socket(
    path: str, *, mode: int = 0o660, group: str | None = None, staging: Path | None = None
) -> tuple[socket.socket, SocketFile]:
    """A listening unix socket at `path` with `mode` and `group`, and its file (to remove at stop);
    a stale socket file nothing answers on is replaced.

    `staging` is where the socket is made before it is renamed to `path`: a directory on the same
    filesystem that only the daemon can write and no container sees (default: `path`'s own, right
    for the daemon's run directory; a module's socket directory is staged in its parent).
    Refuses (DaemonError) when something answers on `path` or it is not a socket.
    """
    target = Path(path)
    gid = _group_id(group)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as error:
        raise DaemonError(
            f"cannot create the socket directory {target.parent}: {error.strerror}",
            hint="check the permissions of paths.run_dir",
        ) from None
    _check_replaceable(target)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        private = _private_directory(Path(staging) if staging else target.parent)
        try:
            _bind_privately(sock, private, target, mode, gid)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(private, _BOUND))
            os.rmdir(private)
        placed = target.lstat()
    except OSError as error:
        sock.close()
        raise DaemonError(
            f"cannot create the API socket {path}: {error.strerror}",
            hint="check the permissions of its directory and listen.socket_group",
        ) from None
    sock.setblocking(False)
    return sock, SocketFile(path, placed.st_dev, placed.st_ino, placed.st_ctime_ns)


def _private_directory(parent: Path) -> str:
    """A new 0700 directory with a random name in `parent` (as `tempfile.mkdtemp` makes one,
    without loading tempfile, shutil and the compression modules into the daemon: 2 MB)."""
    while True:
        private = os.fspath(parent / f".{os.urandom(8).hex()}")
        try:
            os.mkdir(private, 0o700)
        except FileExistsError:
            continue
        return private


def _bind_privately(
    sock: socket.socket, private: str, target: Path, mode: int, gid: int | None
) -> None:
    """Bind and listen in the directory `private`, set mode and group there, rename to `target`.

    Every step goes through a descriptor of `private`, so no name outside it is ever followed.
    """
    directory = os.open(private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        sock.bind(f"/proc/self/fd/{directory}/{_BOUND}")
        sock.listen(128)
        os.chmod(_BOUND, mode, dir_fd=directory)
        if gid is not None:
            os.chown(_BOUND, -1, gid, dir_fd=directory)
        os.rename(_BOUND, target, src_dir_fd=directory)
    finally:
        os.close(directory)


def inherited_socket(name: str) -> socket.socket:
    """The listening socket systemd passed as `name` (LISTEN_FDS, LISTEN_FDNAMES) or by number."""
    listen_fds = os.environ.get("LISTEN_FDS", "0")
    count = int(listen_fds) if listen_fds.isdigit() else 0
    if os.environ.get("LISTEN_PID") not in (None, str(os.getpid())):
        count = 0
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    first = 3
    if name.isdigit() and first <= int(name) < first + count:
        fd = int(name)
    elif name in names[:count]:
        fd = first + names.index(name)
    else:
        raise DaemonError(
            f"no socket named {name!r} was passed by systemd (LISTEN_FDS={count})",
            hint="check the FileDescriptorName= of the .socket unit, or listen on unix://",
        )
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The pid, uid and gid of the process on the other end, as the kernel recorded them at
    connect, and a pidfd for that pid, opened now (the caller closes it; None if the process is
    gone already or the kernel has no pidfds).

    The pidfd is opened right at accept: for it to pin another process, the client would have to
    exit and its pid be handed out again in between.
    """
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    pid, uid, gid = _PEERCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid, pidfd=_pidfd(pid))


def _pidfd(pid: int) -> int | None:
    if pid <= 0:  # a peer in a pid namespace we cannot see
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _group_id(group: str | None) -> int | None:
    if group is None or group == "":
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"listen.socket_group: no group named {group!r} on this system",
            hint=f"create it (groupadd {group}) or set another group",
        ) from None


def _check_replaceable(target: Path) -> None:
    """Refuse a path that is not a socket or that something answers on (a local connect: it
    succeeds or is refused at once, so this runs at start-up without the executor)."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise DaemonError(
            f"{target} exists and is not a socket", hint="remove it or choose another socket path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(target))
    except (ConnectionRefusedError, FileNotFoundError):
        return
    except OSError as error:
        raise DaemonError(
            f"cannot check the existing socket {target}: {error.strerror}",
            hint="remove it if no edgekeeper is running",
        ) from None
    finally:
        probe.close()
    raise DaemonError(
        f"another process is serving {target}",
        hint="is another edgekeeper running? stop it first (systemctl stop edgekeeper)",
    )
