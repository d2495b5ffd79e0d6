"""Where the CLI finds the daemon: `--socket`, else the config's `[connect] management_uri`, else
the built-in default socket."""

from __future__ import annotations

import argparse
from pathlib import Path

from firmware.api.client import DEFAULT_MANAGEMENT_URI
from firmware.errors import ConfigError

CONFIG_ENV = "EDGEKEEPER_CONFIG"
SOCKET_ENV = "EDGEKEEPER_MANAGEMENT_URI"
# The same as firmware.config.loader's; not imported from there to keep `status` from loading
# the config machinery when there is no config file (a test holds the two equal).
DEFAULT_CONFIG_FILE = Path("/etc/edgekeeper/config.toml")


def management_uri(args: argparse.Namespace) -> str:
    """Where the daemon listens: --socket, else the config's [connect] management_uri (from
    --config, or the default file when it exists and loads), else the built-in default."""
    if args.socket:
        return str(args.socket)
    explicit = args.config is not None or args.board is not None
    if not explicit and not DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_MANAGEMENT_URI
    # Deferred: the config loader (tomllib and the schema) loads only when a config is read.
    from firmware.config import load_config

    try:
        return load_config(args.config, args.board).connect.management_uri
    except ConfigError:
        if explicit:
            raise
        return DEFAULT_MANAGEMENT_URI
