"""Text for `keys list`: the `GET /keys` answer as a table, unreachable backends below it."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from firmware.cli import render


def render_keys(answer: dict[str, Any], args: Namespace) -> str:
    keys = answer.get("keys") or []
    lines = [
        render.table(
            ("NAME", "KIND", "BACKEND"),
            ((k.get("name"), k.get("kind"), k.get("backend")) for k in keys),
        )
        if keys
        else "no keys"
    ]
    lines += [
        f"backend {p.get('backend')} unavailable: {p.get('message')}"
        for p in answer.get("unavailable") or ()
    ]
    return "\n".join(lines)
