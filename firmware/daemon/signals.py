"""Signals the daemon answers: SIGTERM and SIGINT stop it, SIGHUP reloads its configuration.

Handlers run as ordinary callbacks on the event loop (`loop.add_signal_handler`), never inside
an interrupted frame.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS = (signal.SIGHUP,)


def install(
    loop: asyncio.AbstractEventLoop,
    on_stop: Callable[[signal.Signals], None],
    on_reload: Callable[[], None],
) -> Callable[[], None]:
    """Route the stop and reload signals to the callbacks; returns a function undoing it."""
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_stop, sig)
    for sig in RELOAD_SIGNALS:
        loop.add_signal_handler(sig, on_reload)

    def uninstall() -> None:
        for sig in STOP_SIGNALS + RELOAD_SIGNALS:
            loop.remove_signal_handler(sig)

    return uninstall
