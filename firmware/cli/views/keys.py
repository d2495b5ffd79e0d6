"""Text for `keys list`: the `GET /keys` answer as a table with where each copy stands, then
how to move keys config now names another backend for, then the backends out of reach."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from firmware.cli import render


def render_keys(answer: dict[str, Any], args: Namespace) -> str:
    keys = answer.get("keys") or []
    lines = [
        render.table(
            ("NAME", "KIND", "BACKEND", "NOTE"),
            ((k.get("name"), k.get("kind"), k.get("backend"), k.get("note")) for k in keys),
            render.columns_of(args),
        )
        if keys
        else "no keys"
    ]
    lines += [
        f"{k.get('name')} lives in {k.get('backend')}, config names {k.get('configured')}: "
        f"{k.get('advice')}"
        for k in keys
        if k.get("advice")
    ]
    for problem in answer.get("unavailable") or ():
        line = f"backend {problem.get('backend')} unavailable: {problem.get('message')}"
        held = problem.get("keys") or []
        if held:
            line += f"; its keys cannot be used until it is back: {', '.join(held)}"
        lines.append(line)
    return "\n".join(lines)
