"""Where the storage keys live, and the migration from the layout of earlier edgekeepers.

Now: the RSA SRK that DPS, IoT Edge and tpm2-tools expect at 0x81000001, edgekeeper's ECC P-256
storage key (the parent of its keys) at 0x81000002. Before: that same ECC key at 0x81000001, or
a storage key the OS had put there, reused as the parent of edgekeeper's keys.

The parent of the stored keys is kept in a `HandleRecord`. When there is none yet it is decided
once and recorded before anything in the TPM changes: 0x81000002 when no key is stored or a
stored key was made under the ECC template's key, else 0x81000001 (the keys were made under a
foreign storage key there, which stays and keeps its keys). With 0x81000002 recorded, each start
runs the three steps, each one safe to cut short and run again:

1. 0x81000002 empty: CreatePrimary(ECC template) and persist it there. A primary key is derived
   from the owner seed and the template, so it is the very key the stored keys were made under;
2. 0x81000001 holds an ECC key with the same name (our key, the old layout): evict it;
3. 0x81000001 empty: create and persist the RSA SRK there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from tpm2_pytss import ESAPI
from tpm2_pytss.constants import TPM2_ALG

from firmware.tpm.endorsement import SRK_HANDLE, ensure_rsa_srk
from firmware.tpm.handle_record import HandleRecord
from firmware.tpm.primary import evict_persistent, read_persistent
from firmware.tpm.srk import STORAGE_HANDLE, ensure_storage_key, storage_key_name

PARENT_RECORD = "parent.json"


def settle(esapi: ESAPI, record: HandleRecord, key_parents: Callable[[], Collection[bytes]]) -> int:
    """Bring the TPM to the current layout; the persistent handle of the stored keys' parent.

    `key_parents()` gives the TPM names of the parents the stored keys were made under (empty
    when no key is stored); it is asked only while no parent is recorded.
    """
    parent = record.read()
    if parent is None:
        parent = _first_parent(esapi, key_parents())
        record.write(parent)
    if parent == STORAGE_HANDLE:
        _migrate(esapi)
    return parent


def _first_parent(esapi: ESAPI, key_parents: Collection[bytes]) -> int:
    if not key_parents or storage_key_name(esapi) in key_parents:
        return STORAGE_HANDLE
    return SRK_HANDLE


def _migrate(esapi: ESAPI) -> None:
    ours, public = ensure_storage_key(esapi, STORAGE_HANDLE)
    name = bytes(public.get_name())
    esapi.tr_close(ours)
    found = read_persistent(esapi, SRK_HANDLE)
    if found is not None:
        old, old_public = found
        if old_public.publicArea.type == TPM2_ALG.ECC and bytes(old_public.get_name()) == name:
            evict_persistent(esapi, old)
            found = None
        else:
            esapi.tr_close(old)
    if found is None:
        srk, _ = ensure_rsa_srk(esapi)
        esapi.tr_close(srk)
