"""Entry point of the `edgekeeper` binary: `python -m firmware` and the Nuitka build start here.

The CLI lies below the daemon in the layers; this module, above both, hands the CLI the one
command that starts the daemon.
"""

from __future__ import annotations

import argparse
import sys

from firmware.cli.main import main as cli_main


def run_daemon(args: argparse.Namespace) -> int:
    """`edgekeeper run`: the daemon in the foreground until SIGTERM; its exit code."""
    # Deferred: the daemon and every service it runs load only for `run`, not for CLI commands.
    from firmware.daemon.app import run

    return run(args.config, args.board, log_level=args.log_level, log_format=args.log_format)


def main() -> int:
    """Run `sys.argv` as one command line."""
    return cli_main(sys.argv, run_daemon=run_daemon)


if __name__ == "__main__":
    sys.exit(main())
