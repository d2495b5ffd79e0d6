"""Stand-ins for the ESAPI context, for unit tests of policies above it (retry, cache).

They record what the policy asked of the context; the TPM itself is exercised against swtpm in
tests/integration/tpm.
"""

from __future__ import annotations

from tpm2_pytss.TSS2_Exception import TSS2_Exception

from firmware.tpm.errors import TpmUnavailable


class StubEsapi:
    """Just enough of ESAPI for the connection's recovery: startup, flush, handle lookups."""

    def __init__(self, startup_rc: int | None = None) -> None:
        self.startups: list[int] = []
        self.flushed: list[int] = []
        self.closed_trs: list[int] = []
        self.startup_rc = startup_rc

    def startup(self, startup_type):
        self.startups.append(startup_type)
        if self.startup_rc is not None:
            raise TSS2_Exception(self.startup_rc)

    def flush_context(self, handle):
        self.flushed.append(handle)

    def tr_close(self, handle):
        self.closed_trs.append(handle)

    def tr_get_tpm_handle(self, handle):
        return 0x80000000 + handle


class Links:
    """A connector handing out stub contexts and counting connects and closes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.opened: list[StubEsapi] = []
        self.closed = 0
        self.fail_after = fail_after

    def __call__(self):
        if self.fail_after is not None and len(self.opened) >= self.fail_after:
            raise TpmUnavailable("no TPM simulator at 127.0.0.1:1 (swtpm TCTI): refused")
        esapi = StubEsapi()
        self.opened.append(esapi)
        return esapi, self._close

    def _close(self):
        self.closed += 1
