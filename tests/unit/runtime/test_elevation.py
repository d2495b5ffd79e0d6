"""What counts as elevation in createOptions, and which host paths a module may not bind."""

from __future__ import annotations

import os
from typing import Any

import pytest

from firmware.runtime.elevation import (
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    Elevation,
    find_elevation,
    host_path,
    protect,
)

PROTECTED = protect(
    [
        "/etc",
        "/proc",
        "/sys",
        "/dev",
        "/boot",
        "/var/run/docker.sock",
        "/run/edgekeeper",
        "/var/lib/edgekeeper",
    ]
)


def host(**fields: Any) -> dict[str, Any]:
    return {"HostConfig": fields}


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        (host(Privileged=True), "HostConfig.Privileged", "privileged"),
        (host(CapAdd=["NET_ADMIN"]), "HostConfig.CapAdd[0]", "NET_ADMIN"),
        (host(CapAdd=["CHOWN", "cap_sys_admin"]), "HostConfig.CapAdd[1]", "SYS_ADMIN"),
        (host(CapAdd=["all"]), "HostConfig.CapAdd[0]", "every capability"),
        (host(Capabilities=["SYS_PTRACE"]), "HostConfig.Capabilities[0]", "SYS_PTRACE"),
        (host(PidMode="host"), "HostConfig.PidMode", "process namespace"),
        (host(PidMode="container:abc"), "HostConfig.PidMode", "another container"),
        (host(IpcMode="HOST"), "HostConfig.IpcMode", "IPC"),
        (host(UsernsMode="host"), "HostConfig.UsernsMode", "user"),
        (host(UTSMode="host"), "HostConfig.UTSMode", "UTS"),
        (host(CgroupnsMode="host"), "HostConfig.CgroupnsMode", "cgroup"),
        (host(Devices=[{"PathOnHost": "/dev/ttyS0"}]), "HostConfig.Devices", "devices"),
        (host(DeviceCgroupRules=["c 4:* rwm"]), "HostConfig.DeviceCgroupRules", "devices"),
        (host(DeviceRequests=[{"Count": -1}]), "HostConfig.DeviceRequests", "devices"),
        (host(SecurityOpt=["seccomp=unconfined"]), "HostConfig.SecurityOpt[0]", "seccomp"),
        (host(SecurityOpt=["seccomp:unconfined"]), "HostConfig.SecurityOpt[0]", "seccomp"),
        (host(SecurityOpt=['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']), "SecurityOpt[0]", "own"),
        (host(SecurityOpt=["apparmor=unconfined"]), "HostConfig.SecurityOpt[0]", "AppArmor"),
        (host(SecurityOpt=["label=disable"]), "HostConfig.SecurityOpt[0]", "SELinux"),
        (host(SecurityOpt=["label:type:spc_t"]), "HostConfig.SecurityOpt[0]", "SELinux"),
        (host(SecurityOpt=["systempaths=unconfined"]), "HostConfig.SecurityOpt[0]", "/proc"),
        (host(MaskedPaths=[]), "HostConfig.MaskedPaths", "/proc/acpi"),
        (host(ReadonlyPaths=["/proc/bus"]), "HostConfig.ReadonlyPaths", "/proc/fs"),
        (host(VolumesFrom=["other"]), "HostConfig.VolumesFrom", "another container"),
        (host(Binds=["/:/host"]), "HostConfig.Binds[0]", "root directory"),
        (host(Binds=["/tmp:/t", "/etc:/e:ro"]), "HostConfig.Binds[1]", "protected path /etc"),
        (host(Binds=["/etc/ssl/private:/k"]), "HostConfig.Binds[0]", "/etc"),
        (host(Binds=["//etc//:/e"]), "HostConfig.Binds[0]", "/etc"),
        (host(Binds=["/tmp/../etc/.:/e"]), "HostConfig.Binds[0]", "/etc"),
        (host(Binds=["/tmp/../..:/r"]), "HostConfig.Binds[0]", "root directory"),
        (host(Binds=["/proc/1/root:/r"]), "HostConfig.Binds[0]", "/proc"),
        (host(Binds=["/sys:/s"]), "HostConfig.Binds[0]", "/sys"),
        (host(Binds=["/dev/mem:/m"]), "HostConfig.Binds[0]", "/dev"),
        (host(Binds=["/boot:/b"]), "HostConfig.Binds[0]", "/boot"),
        (host(Binds=["/var/run/docker.sock:/s"]), "HostConfig.Binds[0]", "docker.sock"),
        (host(Binds=["/run/docker.sock:/s"]), "HostConfig.Binds[0]", "docker.sock"),
        (host(Binds=["/var/run:/s"]), "HostConfig.Binds[0]", "docker.sock"),
        (host(Binds=["/run/edgekeeper/mnt/other:/s"]), "HostConfig.Binds[0]", "/run/edgekeeper"),
        (host(Binds=["/var/lib:/s"]), "HostConfig.Binds[0]", "/var/lib/edgekeeper"),
        (
            host(Mounts=[{"Type": "bind", "Source": "/", "Target": "/host"}]),
            "HostConfig.Mounts[0].Source",
            "root directory",
        ),
        (
            host(Mounts=[{"Type": "BIND", "Source": "/var/lib/edgekeeper/", "Target": "/d"}]),
            "HostConfig.Mounts[0].Source",
            "/var/lib/edgekeeper",
        ),
        (
            host(
                Mounts=[
                    {
                        "Type": "volume",
                        "Target": "/d",
                        "VolumeOptions": {
                            "DriverConfig": {"Name": "local", "Options": {"device": "/"}}
                        },
                    }
                ]
            ),
            "HostConfig.Mounts[0].VolumeOptions.DriverConfig.Options",
            "volume driver",
        ),
    ],
)
def test_each_kind_of_elevation_is_found_and_named(
    options: dict[str, Any], field: str, words: str
) -> None:
    found = find_elevation(options, PROTECTED)
    assert isinstance(found, Elevation)
    assert found.field.endswith(field)
    assert words in found.what


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"Cmd": ["run"], "Labels": {"a": "b"}},
        host(NetworkMode="host"),
        host(Privileged=False, CapAdd=["NET_BIND_SERVICE", "CAP_CHOWN", "kill"], CapDrop=["ALL"]),
        host(PidMode="", IpcMode="private", UsernsMode="", UTSMode="", CgroupnsMode="private"),
        host(Devices=[], DeviceCgroupRules=None, DeviceRequests=[]),
        host(SecurityOpt=["no-new-privileges", "apparmor=docker-default", "label=level:s0:c1"]),
        host(MaskedPaths=[*DOCKER_MASKED_PATHS, "/proc/extra"]),
        host(ReadonlyPaths=list(DOCKER_READONLY_PATHS)),
        host(Binds=["/tmp/data:/data", "/srv/app:/app:ro", "named:/v", "/anonymous"]),
        host(Binds=["/etcetera:/e", "/process:/p", "/devices:/d", "/var/lib/edgekeeper2:/x"]),
        host(Binds=["/run/edgekeeper-other:/x", "/var/lib/other:/x"]),
        host(Mounts=[{"Type": "volume", "Source": "data", "Target": "/d"}]),
        host(Mounts=[{"Type": "tmpfs", "Target": "/t"}, {"Type": "bind", "Source": "/srv"}]),
    ],
)
def test_ordinary_options_are_not_elevation(options: dict[str, Any]) -> None:
    assert find_elevation(options, PROTECTED) is None


@pytest.mark.parametrize(
    ("written", "cleaned"),
    [("/etc", "/etc"), ("//etc//", "/etc"), ("/a/../etc/./", "/etc"), ("", "/"), ("/..", "/")],
)
def test_host_paths_are_cleaned_as_the_engine_cleans_them(written: str, cleaned: str) -> None:
    assert host_path(written) == cleaned


def test_run_and_var_run_name_the_same_protected_directory() -> None:
    protected = protect(["/run/edgekeeper", "/var/run/docker.sock"])
    assert protected.reached_by("/var/run/edgekeeper/mnt") == (
        "/var/run/edgekeeper/mnt",
        "/var/run/edgekeeper",
    )
    assert protected.reached_by("/run/docker.sock") is not None
    assert protected.reached_by("/run/user") is None


def test_a_symlink_to_a_protected_path_is_seen_through(tmp_path) -> None:
    secret = tmp_path / "data"
    secret.mkdir()
    (tmp_path / "innocent").symlink_to(secret)
    (tmp_path / "up").symlink_to("/")
    lexical = protect([str(secret)])
    resolved = protect([str(secret)], os.path.realpath)
    link = f"{tmp_path}/innocent/keys:/k"
    assert find_elevation(host(Binds=[link]), lexical) is None  # the trap this test is about
    found = find_elevation(host(Binds=[link]), resolved)
    assert found is not None and str(secret) in found.what
    # Cleaned first, `up/..` is tmp_path; followed first (as the kernel would), it is "/".
    etc_only = protect(["/etc"], os.path.realpath)
    escape = find_elevation(host(Binds=[f"{tmp_path}/up/..:/r"]), etc_only)
    assert escape is not None and "root directory" in escape.what


def test_a_protected_path_that_is_itself_a_symlink_is_protected_under_both_names(
    tmp_path,
) -> None:
    real = tmp_path / "real-run"
    real.mkdir()
    (tmp_path / "run").symlink_to(real)
    protected = protect([f"{tmp_path}/run/edgekeeper"], os.path.realpath)
    assert protected.reached_by(f"{real}/edgekeeper/mnt/x") is not None
    assert protected.reached_by(f"{tmp_path}/run/edgekeeper") is not None
