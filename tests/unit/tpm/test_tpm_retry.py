"""The retry and recovery policy of `TpmConnection`, driven by a stub ESAPI.

The stub stands in for the ESAPI context only so the policy can be exercised on exact return-code
sequences; the real TPM behaviour is tested against swtpm in tests/integration/tpm.
"""

from __future__ import annotations

import pytest
from tpm2_pytss.constants import TPM2_SU
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from firmware.errors import DeviceError
from firmware.tpm.connection import TpmConnection
from firmware.tpm.errors import TpmCommandFailed, TpmLockout, TpmUnavailable
from firmware.tpm.retry import RetryPolicy
from tests.unit.tpm.tpm_stubs import Links

RETRY, YIELDED, TESTING = 0x922, 0x908, 0x90A
INITIALIZE, LOCKOUT, OBJECT_MEMORY, REFERENCE_H0 = 0x100, 0x921, 0x902, 0x910
TCTI_IO_ERROR, BAD_VALUE = 0xA000A, 0x1C4


def scripted(*answers):
    """An operation that raises the given return codes in turn, then answers 'done'."""
    calls = []

    def op(esapi):
        calls.append(esapi)
        if len(calls) <= len(answers):
            raise TSS2_Exception(answers[len(calls) - 1])
        return "done"

    op.calls = calls
    return op


def connection(links=None, **policy):
    sleeps: list[float] = []
    tpm = TpmConnection(
        "swtpm:host=127.0.0.1,port=2321",
        retry=RetryPolicy(**policy) if policy else None,
        connector=links or Links(),
        sleep=sleeps.append,
    )
    return tpm, sleeps


def test_retry_then_success_backs_off():
    tpm, sleeps = connection(first_delay_s=0.01, factor=2.0)
    op = scripted(RETRY, YIELDED, TESTING)
    assert tpm.run("signing", op) == "done"
    assert len(op.calls) == 4
    assert sleeps == [0.01, 0.02, 0.04]


def test_retry_is_bounded():
    tpm, sleeps = connection(attempts=3, first_delay_s=0.5, max_delay_s=0.6)
    op = scripted(*[RETRY] * 10)
    with pytest.raises(TpmCommandFailed) as caught:
        tpm.run("signing with key 'k'", op)
    assert len(op.calls) == 3
    assert sleeps == [0.5, 0.6]
    assert caught.value.rc == RETRY
    assert "stayed busy while signing with key 'k' after 3 attempts" in caught.value.message


def test_retry_policy_delays():
    policy = RetryPolicy(attempts=5, first_delay_s=0.1, factor=3, max_delay_s=1.0)
    assert list(policy.delays()) == pytest.approx([0.1, 0.3, 0.9, 1.0])
    assert sum(RetryPolicy().delays()) == pytest.approx(3.27)  # the default, as docs/tpm.md says
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_initialize_gets_startup_clear_and_forgets_loaded_objects():
    links = Links()
    tpm, _ = connection(links)
    tpm.run("loading", lambda esapi: tpm.objects.load(esapi, "k", b"blob", lambda: 7))
    op = scripted(INITIALIZE)
    assert tpm.run("signing", op) == "done"
    esapi = links.opened[0]
    assert esapi.startups == [TPM2_SU.CLEAR]
    assert "k" not in tpm.objects
    assert esapi.closed_trs == [7]  # dropped from ESAPI, not flushed: the TPM lost it already
    assert esapi.flushed == []
    assert tpm.resets == 1


def test_startup_answered_with_initialize_means_already_started():
    links = Links()
    tpm, _ = connection(links)
    tpm.run("connecting", lambda esapi: None)
    links.opened[0].startup_rc = INITIALIZE
    assert tpm.run("signing", scripted(INITIALIZE)) == "done"


def test_initialize_twice_in_one_operation_fails():
    tpm, _ = connection()
    with pytest.raises(TpmCommandFailed):
        tpm.run("signing", scripted(INITIALIZE, INITIALIZE))


def test_lockout_is_a_device_error_with_the_fix():
    tpm, _ = connection()
    with pytest.raises(TpmLockout) as caught:
        tpm.run("signing with key 'k'", scripted(LOCKOUT))
    assert isinstance(caught.value, DeviceError)
    assert "dictionary-attack lockout" in caught.value.message
    assert "tpm2_dictionarylockout -c" in caught.value.hint


def test_lost_connection_reconnects_once():
    links = Links()
    tpm, _ = connection(links)
    tpm.run("loading", lambda esapi: tpm.objects.load(esapi, "k", b"blob", lambda: 7))
    op = scripted(TCTI_IO_ERROR)
    assert tpm.run("signing", op) == "done"
    assert len(links.opened) == 2
    assert links.closed == 1
    assert op.calls == links.opened  # the retry went to the new context
    assert len(tpm.objects) == 0


def test_lost_connection_twice_is_unavailable():
    tpm, _ = connection()
    with pytest.raises(TpmUnavailable) as caught:
        tpm.run("signing", scripted(TCTI_IO_ERROR, TCTI_IO_ERROR))
    assert "lost the TPM (swtpm at 127.0.0.1:2321) while signing" in caught.value.message
    assert "[tpm] device" in caught.value.hint


def test_reconnect_that_fails_reports_the_tcti_error():
    tpm, _ = connection(Links(fail_after=1))
    with pytest.raises(TpmUnavailable, match="refused"):
        tpm.run("signing", scripted(TCTI_IO_ERROR))


def test_full_tpm_flushes_least_recently_used_and_retries():
    links = Links()
    tpm, _ = connection(links)
    for handle, name in enumerate(["a", "b"], start=1):
        tpm.run(
            "loading", lambda esapi, h=handle, n=name: tpm.objects.load(esapi, n, b"x", lambda: h)
        )
    assert tpm.run("loading c", scripted(OBJECT_MEMORY)) == "done"
    assert links.opened[0].flushed == [1]
    assert "a" not in tpm.objects and "b" in tpm.objects


def test_full_tpm_with_nothing_to_flush_fails_with_a_hint():
    tpm, _ = connection()
    with pytest.raises(TpmCommandFailed) as caught:
        tpm.run("loading", scripted(OBJECT_MEMORY))
    assert "no room" in caught.value.message
    assert "/dev/tpmrm0" in caught.value.hint


def test_stale_handle_flushes_what_is_left_reloads_once_then_fails():
    links = Links()
    tpm, _ = connection(links)
    tpm.run("loading", lambda esapi: tpm.objects.load(esapi, "k", b"x", lambda: 5))
    assert tpm.run("signing", scripted(REFERENCE_H0)) == "done"
    assert links.opened[0].flushed == [5]
    assert len(tpm.objects) == 0
    assert tpm.resets == 1
    with pytest.raises(TpmCommandFailed):
        tpm.run("signing", scripted(REFERENCE_H0, REFERENCE_H0))


def test_other_errors_fail_at_once_naming_the_operation():
    tpm, sleeps = connection()
    op = scripted(BAD_VALUE)
    with pytest.raises(TpmCommandFailed) as caught:
        tpm.run("importing key 'k'", op)
    assert len(op.calls) == 1
    assert sleeps == []
    assert caught.value.rc == BAD_VALUE
    assert "refused importing key 'k'" in caught.value.message


def test_closed_connection_flushes_and_refuses_further_use():
    links = Links()
    tpm, _ = connection(links)
    tpm.run("loading", lambda esapi: tpm.objects.load(esapi, "k", b"x", lambda: 3))
    tpm.close()
    assert links.opened[0].flushed == [3]
    assert links.closed == 1
    with pytest.raises(TpmUnavailable, match="closed"):
        tpm.run("signing", scripted())
