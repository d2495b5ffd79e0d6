"""The loaded-object cache: least recently used first out, reload on a new blob, reset detection."""

from __future__ import annotations

import pytest

from firmware.tpm.objects import LoadedObjects
from tests.unit.tpm.tpm_stubs import StubEsapi


class NumberedEsapi(StubEsapi):
    """TPM handle numbers chosen by the test, as a TPM reusing slots would."""

    def __init__(self) -> None:
        super().__init__()
        self.tpm_handles: dict[int, int] = {}

    def tr_get_tpm_handle(self, handle):
        return self.tpm_handles.get(handle, 0x80000000 + handle)


def loader(handle, loads):
    def load():
        loads.append(handle)
        return handle

    return load


def test_hit_does_not_reload_and_refreshes_recency():
    esapi, loads = StubEsapi(), []
    cache = LoadedObjects(capacity=2)
    cache.load(esapi, "a", b"A", loader(1, loads))
    cache.load(esapi, "b", b"B", loader(2, loads))
    assert cache.load(esapi, "a", b"A", loader(9, loads)) == 1
    cache.load(esapi, "c", b"C", loader(3, loads))
    assert loads == [1, 2, 3]
    assert esapi.flushed == [2]  # b was least recently used
    assert "a" in cache and "c" in cache and "b" not in cache


def test_new_blob_under_the_same_name_is_reloaded():
    esapi, loads = StubEsapi(), []
    cache = LoadedObjects()
    cache.load(esapi, "a", b"old", loader(1, loads))
    assert cache.load(esapi, "a", b"new", loader(2, loads)) == 2
    assert esapi.flushed == [1]


def test_reused_tpm_handle_means_reset_and_clears_every_other_entry():
    esapi, loads = NumberedEsapi(), []
    cache = LoadedObjects()
    esapi.tpm_handles = {1: 0x80000000, 2: 0x80000001, 3: 0x80000000}
    cache.load(esapi, "a", b"A", loader(1, loads))
    cache.load(esapi, "b", b"B", loader(2, loads))
    cache.load(esapi, "c", b"C", loader(3, loads))
    assert len(cache) == 1 and "c" in cache
    assert esapi.closed_trs == [1]  # not flushed: 0x80000000 is c now
    assert esapi.flushed == [2]  # may have been loaded after the reset: do not leak its slot
    assert cache.resets_detected == 1


def test_evict_oldest_reports_empty():
    esapi = StubEsapi()
    cache = LoadedObjects()
    assert cache.evict_oldest(esapi) is False
    cache.load(esapi, "a", b"A", lambda: 1)
    assert cache.evict_oldest(esapi) is True
    assert len(cache) == 0


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        LoadedObjects(capacity=0)
