"""Console accounts and attempt limits on the real store: roles fit units, passwords are Argon2
hashes, a disabled or reset account's sessions end, failed attempts are counted per window; and the
``zeroerrand users`` commands an administrator runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from services.common.access import access_code, check_access_code, normalise
from services.common.rule_files import load_rulebook
from services.common.storage import Store
from services.console.accounts import COLLECTIONS, USERS, AccountError, Accounts, Attempts, Role
from tests.conftest import ROOT, RULES

pytestmark = pytest.mark.integration
UNITS = load_rulebook(RULES).units


async def test_roles_must_fit_units_and_passwords_are_hashed(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    accounts = Accounts(store)
    for role, unit in ((Role.GOV_SERVICE, "planning_construction_bureau"), (Role.ECON_DEV, "gov_service_bureau"),
                       (Role.SERVICE_COMPANY, "planning_construction_bureau"), (Role.DEPARTMENT, "no_such_unit")):
        with pytest.raises(AccountError):
            await accounts.add("someone", "某人", unit, role, "long-enough-password", UNITS)
    with pytest.raises(AccountError, match="太短"):
        await accounts.add("someone", "某人", "gov_service_bureau", Role.GOV_SERVICE, "short", UNITS)
    with pytest.raises(AccountError, match="用户名"):
        await accounts.add("Bad Name", "某人", "gov_service_bureau", Role.GOV_SERVICE, "long-enough-password", UNITS)
    added = await accounts.add("gs.li", "李明", "gov_service_bureau", Role.GOV_SERVICE, "long-enough-password", UNITS)
    assert added.session_version == 1
    with pytest.raises(AccountError, match="已存在"):
        await accounts.add("gs.li", "李明", "gov_service_bureau", Role.GOV_SERVICE, "long-enough-password", UNITS)
    stored = await store.db[USERS.name].find_one({"_id": "gs.li"})
    assert stored is not None and stored["password_hash"].startswith("$argon2id$")
    assert "long-enough-password" not in str(stored)

    assert await accounts.authenticate("gs.li", "long-enough-password") == added
    assert await accounts.authenticate("gs.li", "wrong-password-x") is None
    assert await accounts.authenticate("nobody", "long-enough-password") is None
    disabled = await accounts.set_active("gs.li", False)
    assert disabled.session_version == 2, "disabling ends the sessions made before"
    assert await accounts.authenticate("gs.li", "long-enough-password") is None
    reset = await accounts.reset("gs.li", "a-new-long-password")
    assert reset.active and reset.session_version == 3
    assert await accounts.authenticate("gs.li", "long-enough-password") is None
    assert await accounts.authenticate("gs.li", "a-new-long-password") is not None


async def test_failed_attempts_are_limited_per_key_and_window(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    attempts = Attempts(store, limit=3, window_s=60)
    start = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)
    for _ in range(2):
        await attempts.failed(["access:project:P1", "access:ip:1.2.3.4"], start)
    assert await attempts.blocked(["access:project:P1"], start) is None
    await attempts.failed(["access:project:P1", "access:ip:1.2.3.4"], start)
    wait = await attempts.blocked(["access:project:P2", "access:ip:1.2.3.4"], start)
    assert wait == timedelta(seconds=55), "the address reached the limit for any project"
    assert await attempts.blocked(["access:project:P2", "access:ip:5.6.7.8"], start) is None
    assert await attempts.blocked(["access:project:P1"], start + timedelta(seconds=60)) is None, "a new window"


def test_access_codes_are_per_project_and_key() -> None:
    code = access_code("key-one-0123456789", "HLXQ-2026-0031")
    assert len(code) == 19 and code.count("-") == 3
    assert code != access_code("key-one-0123456789", "HLXQ-2026-0047")
    assert code != access_code("key-two-0123456789", "HLXQ-2026-0031")
    assert check_access_code("key-one-0123456789", "HLXQ-2026-0031", code.lower().replace("-", " "))
    assert not check_access_code("key-one-0123456789", "HLXQ-2026-0031", "91150100MA0N8XK21Q")
    assert normalise(" abcd-efgh ijkl mnop ") == "ABCD-EFGH-IJKL-MNOP"


def test_users_commands(embedded_uri: str, store: Store) -> None:
    """An administrator adds, lists, disables and resets accounts from the command line."""
    env = {**os.environ, "MONGODB_URL": embedded_uri, "ZEROERRAND_DATABASE": store.db.name}

    def run(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", "users", *args], cwd=ROOT, env=env, text=True,
                              input=password, capture_output=True, timeout=60)

    added = run("add", "pc.zhang", "--unit", "planning_construction_bureau", "--role", "department", "--name", "张伟",
                "--password-stdin", password="a-long-password-1\n")
    assert added.returncode == 0, added.stderr
    assert "已开设账号 pc.zhang" in added.stdout
    wrong = run("add", "pc.wang", "--unit", "planning_construction_bureau", "--role", "gov_service", "--name", "王",
                "--password-stdin", password="a-long-password-1\n")
    assert wrong.returncode == 1 and "只能属于单位 gov_service_bureau" in wrong.stderr
    bad_role = run("add", "pc.wang", "--unit", "planning_construction_bureau", "--role", "boss", "--name", "王",
                   "--password-stdin", password="a-long-password-1\n")
    assert bad_role.returncode == 1 and "--role 只能是" in bad_role.stderr
    assert "pc.zhang\t张伟\tplanning_construction_bureau\t承办部门\t启用" in run("list").stdout
    assert run("disable", "pc.zhang").returncode == 0
    assert "停用" in run("list").stdout
    missing = run("disable", "nobody")
    assert missing.returncode == 1 and "没有用户 nobody" in missing.stderr
    assert run("reset", "pc.zhang", "--password-stdin", password="another-long-password\n").returncode == 0
    assert "启用" in run("list").stdout



async def test_concurrent_login_failures_are_each_counted(store: Store) -> None:
    """Each failed try is a record of its own, so none is lost however many arrive at once (a ``$inc``
    on one counter lost most of them on the embedded store)."""
    await store.ensure(COLLECTIONS)
    start = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)
    counting = Attempts(store, limit=40, window_s=300)
    await asyncio.gather(*(counting.failed(["login:user:burst", "login:ip:1.2.3.4"], start) for _ in range(39)))
    assert await counting.blocked(["login:user:burst"], start) is None, "39 failures, under the limit of 40"
    await asyncio.gather(*(counting.failed(["login:user:burst"], start) for _ in range(1)))
    assert await counting.blocked(["login:user:burst"], start) is not None, "the 40th reaches it"
    taking = Attempts(store, limit=100, window_s=300)
    taken = await asyncio.gather(*(taking.take(["login:user:taker"], start) for _ in range(40)))
    assert all(t.wait is None for t in taken)
    assert await Attempts(store, limit=40, window_s=300).blocked(["login:user:taker"], start) is not None
    assert await Attempts(store, limit=41, window_s=300).blocked(["login:user:taker"], start) is None


async def test_changes_of_one_account_at_the_same_moment_are_all_kept(store: Store) -> None:
    """Signing out while an administrator disables the account or resets its password: the embedded
    store's update reads, then writes the whole document, so one change overwrote the other (a
    disabled account active again) and concurrent ``$inc`` of the session version were lost."""
    await store.ensure(COLLECTIONS)
    accounts = Accounts(store, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    lost: list[str] = []
    for trial in range(20):
        name = f"gs.race{trial:02d}"
        added = await accounts.add(name, "李明", "gov_service_bureau", Role.GOV_SERVICE, "long-enough-password", UNITS)
        signed_out, disabled = await asyncio.gather(accounts.end_sessions(name, added.session_version),
                                                    accounts.set_active(name, False))
        now = await accounts.get(name)
        if now is None or now.active or now.session_version < 2:
            lost.append(f"{name}: disable lost ({now})")
        current = now.session_version if now else 0
        results = await asyncio.gather(accounts.reset(name, "a-new-long-password"),
                                       *(accounts.end_sessions(name, current) for _ in range(3)))
        if await accounts.authenticate(name, "a-new-long-password") is None:
            lost.append(f"{name}: password reset lost")
        versions = [results[0].session_version] + ([current + 1] if any(results[1:]) else [])
        after = await accounts.get(name)
        if after is None or after.session_version != current + len(versions):
            lost.append(f"{name}: version {after and after.session_version}, expected {current + len(versions)}")
        if signed_out and disabled.session_version != 3:
            lost.append(f"{name}: sign-out and disable both bumped to {disabled.session_version}")
    kinds = Counter(line.split(": ", 1)[1].split(" (")[0].split(" to ")[0].split(",")[0] for line in lost)
    assert not lost, f"{len(lost)} lost changes in 20 trials: {dict(kinds)}; {lost[:3]}"
