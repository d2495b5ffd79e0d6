"""Run `async def` tests of the daemon on a fresh event loop each, bounded in time."""

from __future__ import annotations

import asyncio
import inspect

import pytest

ASYNC_TEST_TIMEOUT_S = 20


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    coroutine = pyfuncitem.obj(**arguments)
    asyncio.run(asyncio.wait_for(coroutine, ASYNC_TEST_TIMEOUT_S))
    return True
