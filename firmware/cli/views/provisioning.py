"""Text for the provisioning state (`status`, `system status`) and `system reprovision`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from firmware.cli import render


def provisioning_lines(doc: dict[str, Any] | None) -> list[str]:
    """The provisioning state: source and state, hub and device id, the last result and when,
    and when the next try is."""
    if not doc:
        return []
    lines = [f"provisioning: {doc.get('source', '?')}, {doc.get('state', '?')}"]
    if doc.get("deviceId"):
        lines.append(f"  device: {doc['deviceId']} on {doc.get('hub') or 'no hub'}")
    if doc.get("lastResult"):
        lines.append(f"  last result: {doc['lastResult']}{_ago(doc.get('lastAt'))}")
    if doc.get("nextRetryAt"):
        wait = max(0.0, float(doc["nextRetryAt"]) - time.time())
        lines.append(f"  next try in {render.duration(wait)}")
    return lines


def render_reprovisioned(answer: dict[str, Any], args: argparse.Namespace) -> str:
    return f"provisioned: device {answer.get('deviceId')} on {answer.get('hub') or 'no hub'}"


def _ago(when: object) -> str:
    if not isinstance(when, (int, float)):
        return ""
    return f" ({render.duration(max(0.0, time.time() - when))} ago)"
