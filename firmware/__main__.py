"""Entry point of the `edgekeeper` binary: `python -m firmware` and the Nuitka build start here."""

import sys

from firmware.cli.main import main

sys.exit(main())
