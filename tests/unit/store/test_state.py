"""StateStore: named JSON documents, modes, names, corrupt files and leftovers of killed writes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from firmware.errors import BadRequest, StateError
from firmware.store.errors import UnsafeDirectory, UnsafeFile
from firmware.store.state import StateStore


def test_put_get_delete_roundtrip(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.get("agent") is None
    store.put("agent", {"restarts": 3, "image": "edge-agent:1.4"})
    assert store.get("agent") == {"restarts": 3, "image": "edge-agent:1.4"}
    assert store.names() == ["agent"]
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "agent.json").stat().st_mode) == 0o600
    assert store.delete("agent") is True
    assert store.delete("agent") is False
    assert store.get("agent") is None


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", "Upper", ".hidden", "a..b", "x" * 65])
def test_rejects_bad_names(tmp_path: Path, name: str) -> None:
    store = StateStore(tmp_path)
    with pytest.raises(BadRequest, match="invalid state name"):
        store.put(name, {})


def test_corrupt_file_is_reported_and_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.put("identity", {"device": "gw1"})
    path = tmp_path / "identity.json"
    path.write_bytes(b'{"device": "gw')
    with pytest.raises(StateError) as caught:
        store.get("identity")
    assert str(path) in caught.value.message
    assert "corrupt" in caught.value.message
    assert "mv" in caught.value.hint
    assert path.read_bytes() == b'{"device": "gw'


def test_non_object_document_is_corrupt(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(StateError, match="does not hold a JSON object"):
        store.get("list")


def test_ensure_removes_leftover_temp_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.put("agent", {"n": 1})
    (tmp_path / ".agent.json.4242.0.tmp").write_bytes(b'{"n": 2')
    store.ensure()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.json"]
    assert store.get("agent") == {"n": 1}


def test_unwritable_root_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError) as caught:
        StateStore(blocker / "state").ensure()
    assert str(blocker / "state") in caught.value.message


def test_a_linked_document_is_refused_and_a_put_replaces_the_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text('{"secret": "not yours"}')
    store = StateStore(tmp_path / "state")
    store.ensure()
    link = tmp_path / "state" / "agent.json"
    link.symlink_to(victim)
    with pytest.raises(UnsafeFile) as caught:
        store.get("agent")
    assert caught.value.message == f"{link} is a symbolic link; refusing to follow it"
    store.put("agent", {"n": 1})
    assert not link.is_symlink()
    assert store.get("agent") == {"n": 1}
    assert victim.read_text() == '{"secret": "not yours"}'


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_state_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "state"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(UnsafeDirectory) as caught:
        StateStore(root).ensure()
    assert caught.value.render().startswith(f"state directory {root} is writable by group")
    assert caught.value.hint == f"chmod 700 {root}"
    assert stat.S_IMODE(root.stat().st_mode) == mode


def test_a_readable_state_directory_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    root.chmod(0o755)
    StateStore(root).ensure()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
