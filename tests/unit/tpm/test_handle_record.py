"""The small records of TPM handles: nothing recorded, a round trip written 0600, and a damaged
record named with what to do, never read as some other handle."""

from __future__ import annotations

import stat

import pytest

from firmware.store.errors import CorruptState, UnsafeFile
from firmware.tpm.handle_record import HandleRecord


def test_nothing_recorded_then_a_round_trip(tmp_path):
    record = HandleRecord(tmp_path / "parent.json", "TPM key parent record")
    assert record.read() is None
    record.write(0x81000002)
    assert record.read() == 0x81000002
    record.write(0x81000001)
    assert record.read() == 0x81000001
    assert stat.S_IMODE(record.path.stat().st_mode) == 0o600
    assert record.path.read_text() == '{"handle": "0x81000001"}\n'


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"handle": 12}', b'{"handle": "zz"}', b'{"handle": "0x01000000"}'],
)
def test_a_damaged_record_is_named(tmp_path, content):
    record = HandleRecord(tmp_path / "dps-auth-key.json", "DPS auth key record")
    record.path.write_bytes(content)
    with pytest.raises(CorruptState) as caught:
        record.read()
    assert f"DPS auth key record {record.path} is damaged" in caught.value.message
    assert "delete it" in caught.value.hint


def test_a_planted_link_is_not_followed(tmp_path):
    (tmp_path / "elsewhere").write_text('{"handle": "0x81000001"}')
    (tmp_path / "parent.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFile):
        HandleRecord(tmp_path / "parent.json", "TPM key parent record").read()
