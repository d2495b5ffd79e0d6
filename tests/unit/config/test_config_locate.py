"""The key locator: dotted keys map to the line they are written on."""

from __future__ import annotations

import tomllib

from firmware.config.locate import key_lines

SAMPLE = '''\
# a comment with key = value inside
hostname = "gw"  # trailing comment

[provisioning]
source = "manual"
note = """
fake = 1
"""
literal = \'\'\'
[not.a.table]
\'\'\'

[provisioning.authentication]
device_id_pk = { value = "abc", uri = "file:///k" }
list = [
  1,  # a comment in an array
  { inner = 2 },
]

[ "quoted table" . sub ]
"quoted key" = 1
dotted.key.here = true
escaped = "a \\" = b"
after = 3

[[modules]]
name = "x"
'''


def test_every_key_is_placed_on_its_line() -> None:
    tomllib.loads(SAMPLE)  # the sample is valid TOML
    lines = key_lines(SAMPLE)
    assert lines["hostname"] == 2
    assert lines["provisioning"] == 4
    assert lines["provisioning.source"] == 5
    assert lines["provisioning.note"] == 6
    assert lines["provisioning.literal"] == 9
    assert lines["provisioning.authentication"] == 13
    assert lines["provisioning.authentication.device_id_pk"] == 14
    assert lines["provisioning.authentication.device_id_pk.uri"] == 14
    assert lines["provisioning.authentication.list"] == 15
    assert lines["provisioning.authentication.list.1.inner"] == 17
    assert lines["quoted table.sub"] == 20
    assert lines["quoted table.sub.quoted key"] == 21
    assert lines["quoted table.sub.dotted.key.here"] == 22
    assert lines["quoted table.sub.escaped"] == 23
    assert lines["quoted table.sub.after"] == 24
    assert lines["modules.name"] == 27


def test_text_inside_strings_is_not_taken_for_keys() -> None:
    lines = key_lines(SAMPLE)
    assert "fake" not in lines
    assert "provisioning.fake" not in lines
    assert "not.a.table" not in lines


def test_broken_text_gives_what_was_found_without_raising() -> None:
    lines = key_lines('a = 1\nb = "unterminated\nc = 3\n')
    assert lines["a"] == 1
    assert key_lines("= = =\n[") == {}
