"""Text for the container commands (`list`, `logs`, `deploy`, `system status|logs`, `start`...),
and the two that run on the CLI's side: `deploy` (reads the local manifest) and `logs` (streams).

Renderers take the management API's JSON answer; the CLI and the console show the same text.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from firmware.cli import render
from firmware.errors import BadRequest, UsageError


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


def render_modules(answer: dict[str, Any], args: argparse.Namespace | None = None) -> str:
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
    return render.table(("NAME", "STATUS", "UPTIME", "IMAGE", "DETAIL"), rows)


def render_done(verb: str):
    def rendered(answer: object, args: argparse.Namespace) -> str:
        return f"{args.name}: {verb}"

    return rendered


def render_log_lines(answer: dict[str, Any], args: argparse.Namespace | None = None) -> str:
    lines = answer.get("lines") or []
    if not lines:
        return "(no log lines)"
    return "\n".join(item["text"] if isinstance(item, dict) else str(item) for item in lines)


def render_system_status(answer: dict[str, Any], args: argparse.Namespace | None = None) -> str:
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
    return "\n".join(lines)


def render_deployment(answer: dict[str, Any], args: argparse.Namespace | None = None) -> str:
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


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path` (TOML by extension `.toml`, JSON otherwise), checked locally;
    errors name the file and the field."""
    from firmware.runtime.manifest import parse_deployment

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    try:
        parse_deployment(doc)
    except BadRequest as exc:
        raise BadRequest(f"{path}: {exc.message}", hint=exc.hint) from None
    return doc


def deploy(args: argparse.Namespace) -> Any:
    """`edgekeeper deploy MANIFEST [--dry-run]`: validate here, diff and apply in the daemon."""
    from firmware.api.client import ApiClient
    from firmware.cli.commands import CommandResult
    from firmware.cli.main import management_uri

    doc = read_manifest(Path(args.manifest))
    query = {"dry-run": "true" if args.dry_run else "false"}
    client = ApiClient(management_uri(args))
    answer = asyncio.run(client.request("POST", "/deployments", query, doc))
    return CommandResult(render_deployment(answer.json()))


def follow_logs(args: argparse.Namespace) -> Any:
    """`edgekeeper logs NAME [--tail N] [--since T] [-f]` on the CLI: streamed to stdout."""
    from firmware.api.client import ApiClient
    from firmware.cli.commands import CommandResult
    from firmware.cli.main import management_uri

    query = {"tail": str(args.tail) if args.tail is not None else "all"}
    if args.since:
        query["since"] = args.since
    if args.follow:
        query["follow"] = "true"
    if args.timestamps:
        query["timestamps"] = "true"
    client = ApiClient(management_uri(args))
    path = f"/modules/{args.name}/logs"

    async def copy() -> None:
        async for chunk in client.stream("GET", path, query):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    try:
        asyncio.run(copy())
    except KeyboardInterrupt:
        return CommandResult("", 130)
    return CommandResult("")
