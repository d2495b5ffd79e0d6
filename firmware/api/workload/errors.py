"""Errors of the workload API."""

from __future__ import annotations

from firmware.errors import Forbidden


class NotThisModule(Forbidden):
    """A caller asked to act as a module it is not."""
