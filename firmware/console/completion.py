"""Tab completion on the console: the words that may stand for the last word typed.

`Completer.candidates(before)` answers for the text before the cursor, split at spaces: the
first word from the console's commands (the CLI's command table on the console surface, and
the session's own words), the second word of a group (`keys list`), option names after `-`, the
choices of an argument (`log-level d`), the command words after `help`, and the names the
daemon knows for an argument that names a module, a key, a certificate or a module identity.
Which arguments name what comes from `NAMED_ARGUMENTS`, or from the command's request path
(`/modules/{name}/restart`: `name` is a module).

`DaemonNames` fetches those names through the invoker the console's commands use, only when Tab
asks, keeps each list for `ttl_s`, and gives up after `timeout_s`: a fetch that fails or is late
completes nothing (and is not asked again before `ttl_s`).

`layout(words, width)` sets a list of candidates in columns for a terminal `width` wide.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, get_args

from firmware.cli.commands import CONSOLE, Argument, Command, Invoker, commands_for
from firmware.config.schema import KeyBackendName

log = logging.getLogger(__name__)

MODULES = "modules"
KEYS = "keys"
CERTIFICATES = "certificates"
IDENTITIES = "identities"

NAMES_TTL_S = 3.0
NAMES_TIMEOUT_S = 1.0

OwnWords = Mapping[str, "OwnWords"]  # a word and the words that may follow it


@dataclass(frozen=True)
class NameList:
    """Where the daemon lists some names: GET `path`, the list under `field`, each item's
    name under `key`."""

    path: str
    field: str
    key: str


NAME_LISTS: Mapping[str, NameList] = {
    MODULES: NameList("/modules", "modules", "name"),
    KEYS: NameList("/keys", "keys", "name"),
    CERTIFICATES: NameList("/certificates", "certificates", "name"),
    IDENTITIES: NameList("/identities", "identities", "moduleId"),
}
_BY_COLLECTION = {listing.path: kind for kind, listing in NAME_LISTS.items()}
_PLACEHOLDER = re.compile(r"(/[a-z-]+)/\{(\w+)\}")

# (command, argument): what the argument names. A command whose request path puts the argument
# after a listed collection (`/modules/{name}/start`) needs no entry.
NAMED_ARGUMENTS: Mapping[tuple[str, str], str] = {
    **{(verb, "name"): MODULES for verb in ("logs", "start", "stop", "restart")},
    ("identity show", "name"): IDENTITIES,
    ("certs renew", "name"): CERTIFICATES,
    ("keys migrate", "names"): KEYS,
}
# (command, option): the values it takes, where argparse has no `choices` for them.
FIXED_VALUES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("keys migrate", "--to"): get_args(KeyBackendName),
}
_FLAG_ACTIONS = frozenset({"store_true", "store_false", "store_const", "count", "help"})


class NameSource(Protocol):
    """Names the daemon knows, by kind (MODULES, KEYS, CERTIFICATES, IDENTITIES)."""

    async def names(self, kind: str) -> tuple[str, ...]: ...


class DaemonNames:
    """Names fetched from the daemon's management routes through `invoker`, kept a while."""

    def __init__(
        self,
        invoker: Invoker,
        *,
        ttl_s: float = NAMES_TTL_S,
        timeout_s: float = NAMES_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._invoker = invoker
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._kept: dict[str, tuple[float, tuple[str, ...]]] = {}

    async def names(self, kind: str) -> tuple[str, ...]:
        """The names of `kind`, from the list kept if fresh, else fetched (nothing on failure)."""
        kept = self._kept.get(kind)
        if kept is not None and self._clock() - kept[0] < self._ttl_s:
            return kept[1]
        listing = NAME_LISTS[kind]
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await self._invoker.request("GET", listing.path, {}, None)
            found = _names_in(answer.json(), listing)
        except Exception as error:  # any failure only means nothing to complete
            log.debug("console completion: no %s from %s: %s", kind, listing.path, error)
            found = ()
        self._kept[kind] = (self._clock(), found)
        return found


def _names_in(document: object, listing: NameList) -> tuple[str, ...]:
    items = document.get(listing.field) if isinstance(document, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        str(item[listing.key]) for item in items if isinstance(item, dict) and item.get(listing.key)
    )


class Completer:
    """The console's completions; `own` are the session's own words (`log mute`, `logout`)."""

    def __init__(
        self,
        names: NameSource | None = None,
        *,
        own: OwnWords | None = None,
        table: Iterable[Command] | None = None,
    ) -> None:
        self._names = names
        self._own: OwnWords = own or {}
        self._commands = {command.name: command for command in commands_for(CONSOLE, table)}
        self._groups: dict[str, list[str]] = {}
        for command in self._commands.values():
            first, *rest = command.words
            if rest:
                self._groups.setdefault(first, []).append(rest[0])

    async def candidates(self, before: str) -> list[str]:
        """The words that may stand for the last word of `before` (sorted, each starting with
        it; the empty word when `before` ends with a space)."""
        words = before.split()
        current = "" if not before or before[-1].isspace() else words.pop()
        found = await self._words_after(words, current)
        return sorted({word for word in found if word.startswith(current)})

    async def _words_after(self, words: list[str], current: str) -> Iterable[str]:
        if not words:
            return self._command_words([])
        own = self._own.get(words[0])
        if own is not None:
            for word in words[1:]:
                own = own.get(word, {})
            return own.keys()
        found = self._command(words)
        if found is None:
            return self._command_words(words)
        command, rest = found
        if command.name == "help":
            return self._command_words(rest)
        return await self._argument_words(command, rest, current)

    def _command_words(self, words: list[str]) -> Iterable[str]:
        """Command words after `words` (nothing, or a group's first word)."""
        if not words:
            singles = (name for name in self._commands if " " not in name)
            return [*singles, *self._groups, *self._own]
        if len(words) == 1:
            return self._groups.get(words[0], ())
        return ()

    def _command(self, words: list[str]) -> tuple[Command, list[str]] | None:
        single = self._commands.get(words[0])
        if single is not None:
            return single, words[1:]
        if len(words) >= 2:
            grouped = self._commands.get(f"{words[0]} {words[1]}")
            if grouped is not None:
                return grouped, words[2:]
        return None

    async def _argument_words(
        self, command: Command, rest: list[str], current: str
    ) -> Iterable[str]:
        options = {flag: item for item in command.arguments for flag in _option_flags(item)}
        if current.startswith("-"):
            return [*options, "--help"]
        positionals = [item for item in command.arguments if not _option_flags(item)]
        position = 0
        wanting: Argument | None = None
        for word in rest:
            if wanting is not None:
                wanting = None
            elif word.startswith("-"):
                option = options.get(word)
                if option is not None and option.options.get("action") not in _FLAG_ACTIONS:
                    wanting = option
            elif position < len(positionals) and positionals[position].options.get("nargs") not in (
                "*",
                "+",
            ):
                position += 1
        target = wanting or (positionals[position] if position < len(positionals) else None)
        if target is None:
            return ()
        return await self._values(command, target)

    async def _values(self, command: Command, item: Argument) -> Iterable[str]:
        choices = item.options.get("choices")
        if choices:
            return [str(choice) for choice in choices]
        flag = item.flags[0]
        fixed = FIXED_VALUES.get((command.name, flag))
        if fixed is not None:
            return fixed
        kind = NAMED_ARGUMENTS.get((command.name, flag)) or _named_by_path(command, flag)
        if kind is None or self._names is None:
            return ()
        return await self._names.names(kind)


def _option_flags(item: Argument) -> list[str]:
    return [flag for flag in item.flags if flag.startswith("-")]


def _named_by_path(command: Command, dest: str) -> str | None:
    """What `dest` names when the request path puts it after a listed collection."""
    if command.call is None:
        return None
    for collection, placeholder in _PLACEHOLDER.findall(command.call.path):
        if placeholder == dest:
            return _BY_COLLECTION.get(collection)
    return None


def layout(words: Sequence[str], width: int) -> str:
    """`words` in columns, down then across, in lines at most `width` wide (one column at
    least)."""
    if not words:
        return ""
    cell = max(len(word) for word in words) + 2
    across = max(1, width // cell)
    rows = -(-len(words) // across)
    lines = []
    for row in range(rows):
        line = "".join(word.ljust(cell) for word in words[row::rows])
        lines.append(line.rstrip())
    return "\n".join(lines)
