"""Budgets for expensive work: a bucket per module and one for all, the wait until the next
token as Retry-After, limits read from the config in force; and the routes that spend them."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware.api.workload.ratelimit import (
    Allowance,
    Budget,
    BudgetLimits,
    ModuleBudgets,
    RateLimit,
    SocketRateLimits,
    TokenBucket,
)
from firmware.config.schema import WorkloadBudgets
from firmware.errors import TooManyRequests
from tests.unit.api.workload.workload_rig import b64, workload_rig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_says_how_long_until_the_next_token() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(rate=2.0, burst=2), clock)
    assert bucket.full and bucket.wait_s() == 0.0
    assert bucket.take_or_wait() == 0.0 and bucket.take_or_wait() == 0.0
    assert bucket.take_or_wait() > 0.0
    assert bucket.wait_s() == pytest.approx(0.5)
    clock.now = 0.4
    assert bucket.wait_s() == pytest.approx(0.1)
    clock.now = 0.5
    assert bucket.take_or_wait() == 0.0
    clock.now = 10.0
    assert bucket.full


def per_minute(module: int, overall: int) -> BudgetLimits:
    return BudgetLimits(
        Allowance(module, 60.0, "certificates_per_module"), Allowance(overall, 60.0, "certificates")
    )


def test_module_budget_is_its_own_and_names_its_setting() -> None:
    clock = Clock()
    budget = Budget("certificates", lambda: per_minute(2, 100), clock)
    budget.spend("greedy")
    budget.spend("greedy")
    with pytest.raises(TooManyRequests, match=r"'greedy'.*2 per minute certificates") as spent:
        budget.spend("greedy")
    assert spent.value.http_status == 429
    assert spent.value.retry_after_s == pytest.approx(30.0)
    assert "certificates_per_module" in spent.value.render()
    budget.spend("quiet")
    clock.now = 30.0
    budget.spend("greedy")


def test_global_budget_holds_for_all_modules_and_refusals_cost_nothing() -> None:
    clock = Clock()
    budget = Budget("certificates", lambda: per_minute(2, 3), clock)
    budget.spend("a")
    budget.spend("a")
    budget.spend("b")
    with pytest.raises(TooManyRequests, match="all modules together") as spent:
        budget.spend("c")
    assert spent.value.retry_after_s == pytest.approx(20.0)
    assert "[workload.budgets] certificates" in spent.value.render()
    # "c" was refused before taking anything: one token back in the global bucket is enough.
    clock.now = 20.0
    budget.spend("c")


def test_retry_after_is_the_longer_wait_of_both_buckets() -> None:
    clock = Clock()
    budget = Budget("certificates", lambda: per_minute(1, 2), clock)
    budget.spend("a")
    budget.spend("b")
    clock.now = 10.0
    with pytest.raises(TooManyRequests, match="'a'") as spent:
        budget.spend("a")
    assert spent.value.retry_after_s == pytest.approx(50.0)


def test_changed_limits_apply_at_once() -> None:
    clock = Clock()
    settings = [WorkloadBudgets(certificates_per_module=1)]
    budgets = ModuleBudgets(lambda: settings[0], clock)
    budgets.certificates.spend("m")
    with pytest.raises(TooManyRequests):
        budgets.certificates.spend("m")
    settings[0] = WorkloadBudgets(certificates_per_module=5)
    budgets.certificates.spend("m")


def test_key_operations_are_budgeted_per_second() -> None:
    clock = Clock()
    budgets = ModuleBudgets(lambda: WorkloadBudgets(key_operations_per_module=3), clock)
    for _ in range(3):
        budgets.key_operations.spend("m")
    with pytest.raises(TooManyRequests, match="3 per second key operations") as spent:
        budgets.key_operations.spend("m")
    assert spent.value.retry_after_s == pytest.approx(1 / 3)
    budgets.certificates.spend("m")


def test_many_modules_keep_few_buckets() -> None:
    clock = Clock()
    budget = Budget("certificates", lambda: per_minute(1, 100000), clock)
    for n in range(1000):
        budget.spend(f"m{n}")
        clock.now += 60.0
    assert len(budget._modules) <= 257


def test_socket_limit_answers_the_wait_too() -> None:
    limits = SocketRateLimits(RateLimit(rate=4.0, burst=1), clock=lambda: 0.0)
    limits.check("workload:a")
    with pytest.raises(TooManyRequests) as refused:
        limits.check("workload:a")
    assert refused.value.retry_after_s == pytest.approx(0.25)


def test_routes_answer_429_with_retry_after_once_a_budget_is_spent(tmp_path: Path) -> None:
    budgets = WorkloadBudgets(
        certificates_per_module=2, certificates=3, key_operations_per_module=4, key_operations=1000
    )
    expiration = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def scenario() -> None:
        async with workload_rig(tmp_path, budgets=budgets) as rig:
            ids = {m: (await rig.identities.create(m)).generation_id for m in ("a", "b", "c")}

            async def certificate(module: str):
                path = f"/modules/{module}/genid/{ids[module]}/certificate/server"
                body = {"commonName": module, "expiration": expiration}
                return await rig.call("POST", path, body, listener=f"workload:{module}")

            assert [(await certificate("a")).status for _ in range(3)] == [201, 201, 429]
            spent = await certificate("a")
            assert spent.status == 429
            assert dict(spent.headers)["Retry-After"] == "30"
            assert "certificates_per_module" in spent.json()["message"]
            assert (await certificate("b")).status == 201
            overall = await certificate("c")
            assert overall.status == 429 and "all modules" in overall.json()["message"]
            identity = await rig.call(
                "POST", "/modules/b/certificate/identity", listener="workload:b"
            )
            assert identity.status == 429

            statuses = [
                (await rig.sign("a", ids["a"], b"x", listener="workload:a")).status
                for _ in range(3)
            ]
            body = {"plaintext": b64(b"x"), "initializationVector": b64(os.urandom(12))}
            path = f"/modules/a/genid/{ids['a']}/encrypt"
            statuses.append((await rig.call("POST", path, body, listener="workload:a")).status)
            refused = await rig.call("POST", path, body, listener="workload:a")
            assert statuses == [200, 200, 200, 200]
            assert refused.status == 429
            assert dict(refused.headers)["Retry-After"] == "1"
            assert (await rig.sign("b", ids["b"], b"x", listener="workload:b")).status == 200

    asyncio.run(scenario())


def test_refused_certificate_requests_spend_no_budget(tmp_path: Path) -> None:
    expiration = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def scenario() -> list[int]:
        budgets = WorkloadBudgets(certificates_per_module=1)
        async with workload_rig(tmp_path, budgets=budgets) as rig:
            genid = (await rig.identities.create("m")).generation_id
            path = f"/modules/m/genid/{genid}/certificate/server"
            statuses = []
            for name in ("*.m", "edgeHub", "testbox", "m", "m"):
                body = {"commonName": name, "expiration": expiration}
                statuses.append((await rig.call("POST", path, body, listener="workload:m")).status)
            return statuses

    assert asyncio.run(scenario()) == [400, 403, 403, 201, 429]
