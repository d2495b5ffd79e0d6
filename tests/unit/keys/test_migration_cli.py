"""`keys migrate` through the command table and `POST /keys/migrate`, over a real key service."""

from __future__ import annotations

import asyncio
from argparse import Namespace

from firmware.api.management import key_migration
from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.cli.commands import COMMANDS, InProcessInvoker, execute
from firmware.cli.views.keys_migration import migration_status, render_migration
from firmware.keys.backend import KeyKind
from tests.unit.keys.test_migration_plan import Rig


async def _console(rig: Rig, *argv: str):
    keys = await rig.service()
    router = Router()
    for method, pattern, handler in key_migration.routes(lambda: keys, rig.executor):
        router.add(method, pattern, handler)
    await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
    await keys.create_key("vault-key", KeyKind.HMAC_SHA256)
    result = await execute(list(argv), InProcessInvoker(router))
    return keys, router, result


def test_the_dry_run_shows_the_plan_and_changes_nothing(tmp_path, executor):
    rig = Rig(tmp_path, executor)

    async def scenario():
        keys, _, result = await _console(rig, "keys", "migrate", "device-identity", "--to", "spare")
        assert result.exit_code == 0
        assert result.text.splitlines() == [
            "KEY              KIND         FROM  TO     EXPORTABLE  STATUS",
            "device-identity  hmac-sha256  file  spare  yes         planned",
            "device-identity:",
            "  - copy the material from file into spare",
            "  - verify the copy in spare against file by a round trip",
            "  - record spare as the key's backend",
            "  - delete the copy in file",
            "dry run: nothing was changed; add --apply to carry the plan out",
        ]
        assert keys.locations.backend_of("device-identity") == "file"
        await rig.close()

    asyncio.run(scenario())


def test_apply_moves_and_says_so(tmp_path, executor):
    rig = Rig(tmp_path, executor)

    async def scenario():
        keys, _, result = await _console(
            rig, "keys", "migrate", "device-identity", "--to", "spare", "--apply"
        )
        assert result.exit_code == 0
        assert result.text.splitlines()[1:] == [
            "device-identity  hmac-sha256  file  spare  yes         moved",
            "device-identity:",
            "  moved to spare",
        ]
        assert keys.locations.backend_of("device-identity") == "spare"
        await rig.close()

    asyncio.run(scenario())


def test_all_lists_a_key_that_cannot_move_and_moves_the_others(tmp_path, executor):
    rig = Rig(tmp_path, executor)

    async def scenario():
        keys, _, result = await _console(
            rig, "keys", "migrate", "--all", "--to", "spare", "--apply"
        )
        lines = result.text.splitlines()
        rows = [line.split() for line in lines]
        assert ["vault-key", "hmac-sha256", "sealed", "spare", "no", "refused"] in rows
        assert "  not moved, still in sealed" in lines
        assert any(line.startswith("  - re-provision instead") for line in lines)
        assert keys.locations.backend_of("device-identity") == "spare"
        assert keys.locations.backend_of("vault-key") == "sealed"

        again = await execute(
            ["keys", "migrate", "device-identity", "--to", "spare"], _invoker(keys, rig)
        )
        assert again.text.splitlines()[-2:] == [
            "  - nothing: already in spare",
            "dry run: nothing was changed; add --apply to carry the plan out",
        ]
        await rig.close()

    asyncio.run(scenario())


def _invoker(keys, rig: Rig) -> InProcessInvoker:
    router = Router()
    for method, pattern, handler in key_migration.routes(lambda: keys, rig.executor):
        router.add(method, pattern, handler)
    return InProcessInvoker(router)


def test_a_named_key_that_cannot_move_is_an_error_saying_what_to_do(tmp_path, executor):
    rig = Rig(tmp_path, executor)

    async def scenario():
        _, _, result = await _console(rig, "keys", "migrate", "vault-key", "--to", "spare")
        assert result.exit_code == 1
        assert result.text.startswith("error: key 'vault-key' cannot leave sealed:")
        assert "re-provision instead: make a new key in spare" in result.text
        await rig.close()

    asyncio.run(scenario())


def test_names_or_all_and_a_target_are_required(tmp_path, executor):
    rig = Rig(tmp_path, executor)

    async def scenario():
        for argv in (
            ["keys", "migrate", "--to", "spare"],
            ["keys", "migrate", "device-identity", "--all", "--to", "spare"],
            ["keys", "migrate", "device-identity"],
        ):
            _, _, result = await _console(rig, *argv)
            assert result.exit_code == 2, argv
            assert result.text.startswith("error: "), argv
        await rig.close()

    asyncio.run(scenario())


def test_the_route_refuses_bodies_of_another_shape(tmp_path, executor):
    rig = Rig(tmp_path, executor)

    async def scenario():
        _, router, _ = await _console(rig, "help")
        for body in (
            b'{"keys": ["device-identity"]}',
            b'{"all": true, "keys": ["device-identity"], "to": "spare"}',
            b'{"keys": [], "to": "spare"}',
            b'{"keys": [1], "to": "spare"}',
            b'{"all": "yes", "to": "spare"}',
            b'{"keys": ["device-identity"], "to": "spare", "apply": 1}',
        ):
            request = ApiRequest(
                "POST",
                "/keys/migrate",
                query={"api-version": "2022-08-03"},
                headers={"content-type": "application/json"},
                body=body,
            )
            answer = await router.dispatch(request)
            assert answer.status == 400, body
        await rig.close()

    asyncio.run(scenario())


def test_keys_migrate_is_not_read_only():
    (command,) = [c for c in COMMANDS if c.name == "keys migrate"]
    assert not command.read_only


def test_the_view_says_where_a_failed_key_is_and_what_became_of_leftovers():
    row = {"kind": "hmac-sha256", "from": "file", "to": "pkcs11", "exportable": True}
    answer = {
        "to": "pkcs11",
        "apply": True,
        "keys": [
            {
                **row,
                "name": "a",
                "action": "move",
                "status": "failed",
                "now": "file",
                "problem": "token full",
                "steps": ["copy the material from file into pkcs11"],
            },
            {
                **row,
                "name": "b",
                "action": "stay",
                "status": "unchanged",
                "now": "pkcs11",
                "removed": ["file"],
                "kept": ["tpm"],
                "steps": [],
            },
        ],
    }
    lines = render_migration(answer, Namespace())
    assert lines.splitlines()[3:] == [
        "a:",
        "  failed (the key is in file): token full",
        "  - copy the material from file into pkcs11",
        "b:",
        "  already in pkcs11; leftover copies deleted from file; copies in tpm differ from the "
        "key and were kept",
    ]
    assert render_migration({"to": "tpm", "apply": True, "keys": []}, Namespace()) == (
        "nothing to move: every key is in tpm already"
    )
    assert migration_status(answer) == 1
    assert migration_status({**answer, "keys": answer["keys"][1:]}) == 0
