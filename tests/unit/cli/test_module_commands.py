"""`deploy`'s local checks: the manifest is read and checked on the CLI's side, errors name the
file and the field."""

from __future__ import annotations

import json

import pytest

from firmware.cli.module_commands import read_manifest
from firmware.errors import BadRequest, UsageError


def test_read_manifest_names_file_and_field(tmp_path):
    good = tmp_path / "d.toml"
    good.write_text('[modules.a]\n[modules.a.settings]\nimage = "x"\n[modules.a.env]\nN = 1\n')
    assert read_manifest(good)["modules"]["a"]["env"] == {"N": 1}
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"modules": {"a": {"settings": {}}}}))
    with pytest.raises(BadRequest, match=rf"{bad}: field 'modules.a.settings.image'"):
        read_manifest(bad)
    broken = tmp_path / "b.json"
    broken.write_text("{")
    with pytest.raises(BadRequest, match=rf"{broken}: not valid JSON"):
        read_manifest(broken)
    with pytest.raises(UsageError, match="cannot read manifest"):
        read_manifest(tmp_path / "missing.json")
