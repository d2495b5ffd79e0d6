"""Console completion: command words from the CLI's table, own words, options, choices, and
names fetched from the daemon's routes (through the console's in-process router), kept a few
seconds, bounded in time, and nothing on failure."""

from __future__ import annotations

import asyncio

from firmware.api.model import ApiResponse
from firmware.api.router import Router
from firmware.cli.commands import COMMANDS, CONSOLE, InProcessInvoker, commands_for
from firmware.console.completion import (
    CERTIFICATES,
    IDENTITIES,
    KEYS,
    MODULES,
    Completer,
    DaemonNames,
    layout,
)
from firmware.errors import Unavailable

OWN = {"logout": {}, "log": {"mute": {}, "follow": {}, "level": {"debug": {}, "info": {}}}}


class Names:
    """A name source that records what it is asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def names(self, kind: str) -> tuple[str, ...]:
        self.asked.append(kind)
        return {
            MODULES: ("agent", "hub", "sensor"),
            KEYS: ("device-identity", "edge-ca-key"),
            CERTIFICATES: ("edge-ca", "workload-ca"),
            IDENTITIES: ("sensor", "agent"),
        }[kind]


def candidates(before: str, names: Names | None = None) -> list[str]:
    return asyncio.run(Completer(names or Names(), own=OWN).candidates(before))


def test_first_words_are_the_console_commands_groups_and_own_words():
    found = candidates("")
    for word in ("status", "list", "keys", "certs", "system", "log-level", "logout", "log"):
        assert word in found
    assert "keys list" not in found  # groups complete one word at a time
    assert candidates("sta") == ["start", "status"]
    assert candidates("lo") == ["log", "log-level", "logout", "logs"]


def test_every_console_command_word_is_offered_and_cli_only_ones_are_not():
    firsts = {command.words[0] for command in commands_for(CONSOLE)}
    assert firsts <= set(candidates(""))
    cli_only = {c.words[0] for c in COMMANDS} - firsts
    assert not cli_only & set(candidates(""))


def test_second_word_of_a_group():
    assert candidates("keys ") == ["list", "migrate"]
    assert candidates("certs r") == ["renew"]
    assert candidates("system  s") == ["status"]


def test_module_names_for_commands_whose_request_names_a_module():
    names = Names()
    for verb in ("start", "stop", "restart", "logs"):
        assert candidates(f"{verb} ", names) == ["agent", "hub", "sensor"]
    assert candidates("restart s", names) == ["sensor"]
    assert set(names.asked) == {MODULES}


def test_certificate_identity_and_key_names():
    assert candidates("certs renew ") == ["edge-ca", "workload-ca"]
    assert candidates("identity show a") == ["agent"]
    assert candidates("keys migrate device-identity e") == ["edge-ca-key"]
    assert candidates("keys migrate --to ") == ["file", "pkcs11", "tpm"]
    assert candidates("keys migrate --to tpm d") == ["device-identity"]


def test_options_choices_and_help_topics():
    logs = next(command for command in commands_for(CONSOLE) if command.name == "logs")
    flags = {flag for item in logs.arguments for flag in item.flags if flag.startswith("--")}
    assert set(candidates("logs agent --")) == flags | {"--help"}
    assert candidates("logs agent --tail ") == []  # a number: nothing to offer
    assert candidates("logs agent --tail 5 ") == []  # the one NAME is given
    assert candidates("log-level ") == ["debug", "error", "info", "warning"]
    assert candidates("help ce") == ["certs"]
    assert candidates("help keys m") == ["migrate"]


def test_own_words():
    assert candidates("log ") == ["follow", "level", "mute"]
    assert candidates("log level d") == ["debug"]
    assert candidates("logout ") == []


def test_every_name_argument_of_a_console_command_completes_from_the_daemon():
    names = Names()
    completer = Completer(names)
    for command in commands_for(CONSOLE):
        for item in command.arguments:
            if item.options.get("metavar") != "NAME":
                continue
            option = item.flags[0] if item.flags[0].startswith("-") else ""
            before = f"{command.name} {option} " if option else f"{command.name} "
            asked = len(names.asked)
            asyncio.run(completer.candidates(before))
            assert len(names.asked) == asked + 1, (
                f"`{command.name}` takes a NAME the console cannot complete: "
                "add it to firmware/console/completion.py NAMED_ARGUMENTS"
            )


def test_nothing_for_an_unknown_command_or_without_a_name_source():
    assert candidates("frobnicate ") == []
    assert asyncio.run(Completer(None).candidates("restart ")) == []


def router_listing(calls: list[str], *, fail: bool = False, delay: float = 0.0) -> Router:
    router = Router()

    async def modules(request):
        calls.append(request.path)
        await asyncio.sleep(delay)
        if fail:
            raise Unavailable("the runtime is starting", hint="wait")
        return ApiResponse(200, {"modules": [{"name": "agent"}, {"name": "hub"}, {"x": 1}]})

    router.add("GET", "/modules", modules)
    return router


def test_daemon_names_come_through_the_console_router_and_are_kept_a_while():
    calls: list[str] = []
    now = [100.0]
    names = DaemonNames(InProcessInvoker(router_listing(calls)), ttl_s=3, clock=lambda: now[0])

    async def body():
        assert await names.names(MODULES) == ("agent", "hub")
        now[0] += 2
        assert await names.names(MODULES) == ("agent", "hub")
        assert len(calls) == 1
        now[0] += 2
        await names.names(MODULES)
        assert len(calls) == 2

    asyncio.run(body())


def test_a_failed_or_slow_fetch_completes_nothing_within_the_bound():
    async def body():
        calls: list[str] = []
        failing = DaemonNames(InProcessInvoker(router_listing(calls, fail=True)))
        assert await Completer(failing).candidates("restart ") == []
        unrouted = DaemonNames(InProcessInvoker(Router()))
        assert await unrouted.names(CERTIFICATES) == ()
        slow = DaemonNames(InProcessInvoker(router_listing(calls, delay=5)), timeout_s=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await slow.names(MODULES) == ()
        assert loop.time() - started < 1

    asyncio.run(body())


def test_layout_sets_words_in_columns_within_the_width():
    words = [f"word{n}" for n in range(10)]
    text = layout(words, 30)
    assert all(len(line) <= 30 for line in text.splitlines())
    assert text.splitlines()[0].split() == ["word0", "word3", "word6", "word9"]
    assert layout(["a-very-long-candidate"], 10) == "a-very-long-candidate"
    assert layout([], 80) == ""
