"""Text for `identity list`, `identity show` and `identity sockets` from their API answers."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from firmware.cli import render


def render_identities(answer: dict[str, Any], args: Namespace) -> str:
    identities = answer.get("identities") or []
    if not identities:
        return "no module identities"
    return render.table(
        ("MODULE", "GENERATION", "MANAGED BY", "AUTH"),
        (
            (i.get("moduleId"), i.get("generationId"), i.get("managedBy"), i.get("authType"))
            for i in identities
        ),
        render.columns_of(args),
    )


def render_identity(answer: dict[str, Any], args: Namespace) -> str:
    return "\n".join(
        f"{label}: {render.cell_text(answer.get(key))}"
        for label, key in (
            ("module", "moduleId"),
            ("generation", "generationId"),
            ("managed by", "managedBy"),
            ("auth", "authType"),
        )
    )


def render_sockets(answer: dict[str, Any], args: Namespace) -> str:
    sockets = answer.get("sockets") or []
    if not sockets:
        return "no module workload sockets"
    return render.table(
        ("MODULE", "STATE", "CONNECTIONS", "SOCKET"),
        (
            (
                s.get("module"),
                "listening" if s.get("listening") else "closed",
                s.get("connections"),
                s.get("path"),
            )
            for s in sockets
        ),
    )
