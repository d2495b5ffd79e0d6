"""Text for `keys migrate`: the `POST /keys/migrate` answer as a table, then each key's steps."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from firmware.cli import render


def render_migration(answer: dict[str, Any], args: Namespace) -> str:
    keys = answer.get("keys") or []
    if not keys:
        return f"nothing to move: every key is in {answer.get('to')} already"
    lines = [
        render.table(
            ("KEY", "KIND", "FROM", "TO", "EXPORTABLE", "STATUS"),
            (
                (
                    k.get("name"),
                    k.get("kind"),
                    k.get("from"),
                    k.get("to"),
                    "yes" if k.get("exportable") else "no",
                    k.get("status") if k.get("action") != "refuse" else "refused",
                )
                for k in keys
            ),
        )
    ]
    for key in keys:
        lines.append(f"{key.get('name')}:")
        lines += [f"  {_outcome(key)}"] if key.get("status") != "planned" else []
        if key.get("status") in ("planned", "failed") or key.get("action") == "refuse":
            lines += [f"  - {step}" for step in key.get("steps") or ()]
    if not answer.get("apply"):
        lines.append("dry run: nothing was changed; add --apply to carry the plan out")
    return "\n".join(lines)


def migration_status(answer: dict[str, Any]) -> int:
    """The command's exit status: 1 when a key failed to move (it stays usable where it was)."""
    return 1 if any(k.get("status") == "failed" for k in answer.get("keys") or ()) else 0


def _outcome(key: dict[str, Any]) -> str:
    """One line on what became of an applied key."""
    status = key.get("status")
    if status == "failed":
        return f"failed (the key is in {key.get('now')}): {key.get('problem')}"
    if key.get("action") == "refuse":
        return f"not moved, still in {key.get('from')}"
    text = f"moved to {key.get('to')}" if status == "moved" else f"already in {key.get('to')}"
    if key.get("removed"):
        text += f"; leftover copies deleted from {', '.join(key['removed'])}"
    if key.get("kept"):
        text += f"; copies in {', '.join(key['kept'])} differ from the key and were kept"
    return text
