"""Errors of the workload API."""

from __future__ import annotations

from firmware.errors import EdgekeeperError, Forbidden


class NotThisModule(Forbidden):
    """A caller asked to act as a module it is not."""


class TooManyRequests(EdgekeeperError):
    """A socket's rate limit is spent; the caller should slow down."""

    http_status = 429
