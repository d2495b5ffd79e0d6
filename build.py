#!/usr/bin/env python3
"""Set up, build, run, test and bundle edgekeeper; standard library only, run by a bare python3.

    python3 build.py run                 set up, build the sim binary, start the sim services and
                                         run the daemon in the foreground until Ctrl-C; it comes
                                         online through the sim's DPS (symmetric key; add
                                         `--attestation tpm` for TPM attestation on the swtpm;
                                         `--tpm tis-i2c|tis-spi` drives the swtpm over a
                                         simulated I²C or SPI bus instead of its socket)
    python3 build.py test [PYTEST ARGS]  set up, build, run the test suite against the binary
    python3 build.py setup               Debian packages + .venv (implicit in the others)
    python3 build.py build [--board B]   cffi modules + Nuitka -> dist/B/edgekeeper.dist, with
                                         dist/B/edgekeeper pointing at its binary (cached)
    python3 build.py sim start|stop|status [--attestation symmetric_key|tpm] [--tpm T]  (start only)
    python3 build.py bundle --board B    rootfs-overlay tarball dist/B/edgekeeper-B-VERSION.tar.gz
                                         around the program's squashfs image

Every step is keyed on its inputs (stamp files under .cache/), so a second run only checks.
This file reads the command line; the steps live in buildkit/, one module per job.
"""

from __future__ import annotations

import argparse
import sys

from buildkit.bundle import make_bundle
from buildkit.daemon import run_daemon
from buildkit.log import BuildError, log
from buildkit.nuitka import BUILD_MODE, BUILD_MODES
from buildkit.sim import (
    ATTESTATIONS,
    DEFAULT_ATTESTATION,
    SIM_ACTIONS,
    TPM_TRANSPORTS,
    sim_command,
)
from buildkit.steps import build, set_up
from buildkit.testsuite import run_tests

PASS_THROUGH = ("test", "run")  # commands whose unknown arguments go to pytest / the daemon
EXIT_BUILD_ERROR = 2


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The command and its options, and the arguments passed through to pytest or the daemon;
    SystemExit(2) with a usage message for anything else."""
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="install Debian packages and the .venv")
    build_parser = commands.add_parser("build", help="build for a board")
    bundle_parser = commands.add_parser("bundle", help="bundle for a board")
    for sub in (build_parser, bundle_parser):
        sub.add_argument("--board", default="sim", help="board name (boards/NAME.toml)")
    build_parser.add_argument(
        "--mode",
        choices=BUILD_MODES,
        default=BUILD_MODE,
        help="Nuitka mode (default %(default)s; onefile is for comparisons)",
    )
    sim_parser = commands.add_parser("sim", help="the sim board's services")
    sim_parser.add_argument("action", choices=SIM_ACTIONS)
    run_parser = commands.add_parser("run", help="run the daemon on the sim board until Ctrl-C")
    for sub in (sim_parser, run_parser):
        sub.add_argument(
            "--attestation",
            choices=ATTESTATIONS,
            help=f"how the gateway attests to the sim's DPS (default {DEFAULT_ATTESTATION})",
        )
        sub.add_argument(
            "--tpm",
            choices=TPM_TRANSPORTS,
            help="how the gateway reaches the sim's TPM: swtpm's socket (default) or edgekeeper's "
            "own TIS over a simulated I²C or SPI bus",
        )
    commands.add_parser("test", help="run the test suite against the built binary")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "sim" and args.action != "start" and args.attestation is not None:
        parser.error("--attestation goes with `sim start` only")
    if args.command == "sim" and args.action != "start" and args.tpm is not None:
        parser.error("--tpm goes with `sim start` only")
    if args.command in ("sim", "run") and args.attestation is None:
        args.attestation = DEFAULT_ATTESTATION
    return args, rest


def main(argv: list[str]) -> int:
    args, rest = parse(argv)
    try:
        if args.command == "setup":
            set_up()
            log("set-up complete")
            return 0
        if args.command == "build":
            print(build(args.board, args.mode))
            return 0
        if args.command == "bundle":
            print(make_bundle(args.board))
            return 0
        if args.command == "sim":
            return sim_command(args.action, args.attestation, args.tpm or TPM_TRANSPORTS[0])
        if args.command == "run":
            return run_daemon(rest, args.attestation, args.tpm or TPM_TRANSPORTS[0])
        return run_tests(rest)
    except BuildError as error:
        log(f"error: {error}")
        return EXIT_BUILD_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
