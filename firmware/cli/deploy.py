"""`edgekeeper deploy MANIFEST [--dry-run]`: the manifest is read and checked here, on the CLI's
side, then diffed and applied by the daemon (`POST /deployments`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

from firmware.api.client import ApiClient
from firmware.api.errors import DaemonUnreachable
from firmware.cli.connect import management_uri
from firmware.cli.result import CommandResult
from firmware.cli.views.modules import render_deployment
from firmware.errors import BadRequest, UsageError


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path` (TOML by extension `.toml`, JSON otherwise), checked locally;
    errors name the file and the field."""
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
    # Deferred: the runtime's manifest parser loads only for `deploy`, not at every CLI start.
    from firmware.runtime.manifest import parse_deployment

    if not isinstance(doc, dict):
        raise BadRequest(f"{path}: a manifest is a JSON object, not {type(doc).__name__}")
    try:
        parse_deployment(doc)
    except BadRequest as exc:
        raise BadRequest(f"{path}: {exc.message}", hint=exc.hint) from None
    return doc


def deploy(args: argparse.Namespace) -> CommandResult:
    """Validate the manifest here, then let the daemon diff and apply it."""
    doc = read_manifest(Path(args.manifest))
    query = {"dry-run": "true" if args.dry_run else "false"}
    client = ApiClient(management_uri(args))
    answer = asyncio.run(client.request("POST", "/deployments", query, doc)).json()
    if not isinstance(answer, dict):
        raise DaemonUnreachable("the daemon answered POST /deployments without a JSON object")
    return CommandResult(render_deployment(answer, args))
