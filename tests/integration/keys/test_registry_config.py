"""Backends built from config.toml through `registry_from_config`: SoftHSM2 by token label and a
0600 PIN file, swtpm by TCTI; a wrong PIN, an unknown token or a dead TPM is one clear error that
names the device, and the file backend keeps serving."""

from __future__ import annotations

import asyncio

import pytest

from firmware.config import load_config
from firmware.errors import EdgekeeperError
from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.registry import registry_from_config
from firmware.keys.service import KeyService
from tests.unit.keys.conftest import ThreadExecutor


def config(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n{text}')
    path.chmod(0o600)  # it may hold a PIN: the loader refuses one others can read
    return load_config(path)


async def sign_with(cfg, name):
    executor = ThreadExecutor()
    service = KeyService(registry_from_config(cfg), executor)
    try:
        await service.start()
        handle = await service.create_key(name, KeyKind.HMAC_SHA256)
        return await service.sign(handle, SignAlgorithm.HMAC_SHA256, b"x"), await service.list()
    finally:
        await service.close()
        executor.close()


@pytest.mark.softhsm
def test_softhsm_from_config_with_pin_file(softhsm, tmp_path):
    token = softhsm.new_token("config-token")
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.user_pin + "\n")
    pin_file.chmod(0o600)
    cfg = config(
        tmp_path,
        f'[keys.backends]\nhsm-mac = "pkcs11"\n[keys.pkcs11]\nmodule = "{softhsm.module}"\n'
        f'token_label = "{token.label}"\npin_file = "{pin_file}"\n',
    )
    tag, listing = asyncio.run(sign_with(cfg, "hsm-mac"))
    assert len(tag) == 32
    found = {(info.key_id, info.backend) for info in listing.keys}
    assert ("hsm-mac", "pkcs11") in found
    assert ("edgekeeper-handle-validation", "file") in found


@pytest.mark.softhsm
@pytest.mark.parametrize(
    ("setting", "named"),
    [('token_label = "{label}"\npin = "0000"', "{label}"), ('token_label = "absent"', "absent")],
)
def test_softhsm_misconfiguration_is_one_clear_error(softhsm, tmp_path, setting, named):
    token = softhsm.new_token(f"bad-{tmp_path.name[-12:]}")
    cfg = config(
        tmp_path,
        f'[keys]\ndefault_backend = "pkcs11"\n[keys.pkcs11]\nmodule = "{softhsm.module}"\n'
        + setting.format(label=token.label)
        + ("\n" if "pin" in setting else '\npin = "1234"\n'),
    )
    with pytest.raises(EdgekeeperError) as caught:
        asyncio.run(sign_with(cfg, "k"))
    assert named.format(label=token.label) in caught.value.render()
    assert caught.value.hint


@pytest.mark.swtpm
def test_tpm_from_config(swtpm, tmp_path):
    cfg = config(tmp_path, f'[keys.backends]\ntpm-mac = "tpm"\n[tpm]\ntcti = "{swtpm.tcti}"\n')
    tag, listing = asyncio.run(sign_with(cfg, "tpm-mac"))
    assert len(tag) == 32
    assert ("tpm-mac", "tpm") in {(info.key_id, info.backend) for info in listing.keys}
    assert (tmp_path / "data" / "tpm-keys").is_dir()
