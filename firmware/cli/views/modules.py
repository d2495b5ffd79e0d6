"""Text for the container commands: `list`, `show`, `deploy`, `system status` and `system logs`."""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

from firmware.cli import render
from firmware.cli.views.provisioning import provisioning_lines


def uptime(start: str | None, now: float | None = None) -> str | None:
    """Time since an engine timestamp such as 2026-11-23T19:50:23.123456789Z."""
    if not start:
        return None
    seconds = start.rstrip("Z").split(".")[0]
    try:
        moment = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return render.duration((time.time() if now is None else now) - moment.timestamp())


def render_modules(answer: dict[str, Any], args: argparse.Namespace) -> str:
    modules = answer.get("modules") or []
    if not modules:
        return "no modules"
    rows = []
    for module in modules:
        status = module.get("status", {})
        runtime = status.get("runtimeStatus", {})
        running = runtime.get("status") == "running"
        rows.append(
            (
                module.get("name"),
                runtime.get("status"),
                uptime(status.get("startTime")) if running else None,
                module.get("config", {}).get("settings", {}).get("image"),
                runtime.get("description"),
            )
        )
    return render.table(
        ("NAME", "STATUS", "UPTIME", "IMAGE", "DETAIL"), rows, render.columns_of(args)
    )


def render_module(module: dict[str, Any], args: argparse.Namespace) -> str:
    """One module, one field a line, nothing cut (the detail `list` cuts to the width)."""
    status = module.get("status", {})
    runtime = status.get("runtimeStatus", {})
    exited = status.get("exitStatus") or {}
    fields = (
        ("name", module.get("name")),
        ("status", runtime.get("status")),
        ("desired", module.get("desiredStatus")),
        ("uptime", uptime(status.get("startTime")) if runtime.get("status") == "running" else None),
        ("image", module.get("config", {}).get("settings", {}).get("image")),
        ("restarts", module.get("restartCount")),
        ("exit code", exited.get("statusCode")),
        ("exited at", exited.get("exitTime")),
        ("detail", runtime.get("description")),
    )
    width = max(len(label) for label, _ in fields) + 1
    return "\n".join(
        f"{(label + ':').ljust(width)} {render.cell_text(value)}" for label, value in fields
    )


def render_log_lines(answer: dict[str, Any], args: argparse.Namespace) -> str:
    lines = answer.get("lines") or []
    if not lines:
        return "(no log lines)"
    return "\n".join(item["text"] if isinstance(item, dict) else str(item) for item in lines)


def render_system_status(answer: dict[str, Any], args: argparse.Namespace) -> str:
    engine = answer.get("engine") or {}
    if engine.get("reachable"):
        head = (
            f"container engine: reachable at {engine.get('socket')}, Docker "
            f"{engine.get('version')} (API {engine.get('api_version')})"
        )
    else:
        head = f"container engine: UNAVAILABLE at {engine.get('socket')}: {engine.get('error')}"
    modules = dict(answer.get("modules") or {})
    total = modules.pop("total", 0)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(modules.items()))
    lines = [head, f"modules: {total}" + (f" ({counts})" if counts else "")]
    degraded = answer.get("degraded")
    lines.append(f"degraded: {degraded}" if degraded else "degraded: no")
    lines.extend(provisioning_lines(answer.get("provisioning")))
    return "\n".join(lines)


def render_deployment(answer: dict[str, Any], args: argparse.Namespace) -> str:
    changes = answer.get("changes") or []
    dry = answer.get("dryRun")
    lines = []
    for change in changes:
        kind = {"add": "+", "remove": "-", "update": "~"}.get(change.get("change"), "?")
        line = f"{kind} {change.get('name')} ({change.get('image')})"
        if change.get("details"):
            line += ": " + "; ".join(change["details"])
        if change.get("recreate"):
            line += " [container recreated]"
        lines.append(line)
    for skipped in answer.get("skipped") or ():
        lines.append(f"  skipped {skipped} (the agent comes from [agent] in config.toml)")
    if not changes:
        lines.append("no changes")
    elif dry:
        lines.append(f"{len(changes)} change(s); dry run, nothing applied")
    else:
        lines.append(f"{len(changes)} change(s) applied")
    return "\n".join(lines)
