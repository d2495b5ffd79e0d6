"""Configuration: the TOML schema, loading with file/line positions, validation and board files.

`load_config(config_file, board)` returns the frozen `Config` tree (defaults, board file,
config.toml, config.d/*.toml merged) or raises `ConfigProblems` (a `ConfigError`) listing every
problem with its file, line, key and hint. `firmware.config.report` renders `config validate` and
`config show`; `list_boards()` names the boards `--board` accepts.
"""

from firmware.config.boards import list_boards
from firmware.config.errors import ConfigProblem, ConfigProblems
from firmware.config.loader import DEFAULT_CONFIG_FILE, load_config, validate_files
from firmware.config.schema import Config

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Config",
    "ConfigProblem",
    "ConfigProblems",
    "list_boards",
    "load_config",
    "validate_files",
]
