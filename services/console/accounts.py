"""Console accounts (one per person, each acting for one unit in one role) and attempt limits.

Passwords are hashed with Argon2id (argon2-cffi, the reference implementation's binding). A
session cookie carries the account's name and its ``session_version``; resetting the password or
disabling the account bumps the version, so every session made before ends at its next request.

An account is never updated in place: the embedded store (FerretDB 1.24) updates a document by
reading it and writing it back whole, so two changes at once (a sign-out while an administrator
disables the account) left one of them undone, and concurrent ``$inc`` of the version were lost.
``console_users`` keeps each account as it was added (version 1); every later change is a new
document in ``console_user_changes`` with the account's whole state at the next version, ``_id``
``"<username>#<version>"``. Inserting it is atomic on every store: of two changes made on the same
version, one is stored and the other is made again on top of it. The account's current state is
its highest version; ``latest`` on its ``console_users`` document says about where that is.

Failed logins and access codes are counted in the store per key (account, project, client
address) and fixed window, so every console replica sees the same counts. (The ``limits``
library's MongoDB storage needs motor, which reached its end of life; each try is one record.)
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common.domain import ECON_DEV_BUREAU, Unit, UnitKind
from services.common.storage import Collection, Store

USERS = Collection("console_users", (IndexModel([("unit", ASCENDING)]),))
# every change of an account after it was added: the whole account at each later version; read by _id only
CHANGES = Collection("console_user_changes")
# no TTL index: the embedded store (FerretDB 1.24) has none; windows that ended are deleted on the next miss
ATTEMPTS = Collection("console_attempts", (IndexModel([("expires_at", ASCENDING)]), IndexModel([("window", ASCENDING)])))
COLLECTIONS = (USERS, CHANGES, ATTEMPTS)
STATE = ("display_name", "unit", "role", "active", "password_hash", "created_at")
PROBE = 8  # versions looked for at once beyond the last known one
CHANGE_TRIES = 50  # changes of one account made at the same moment that one change gives way to

GOV_SERVICE_BUREAU = "gov_service_bureau"
# 管委会 (the New Area's administrative committee) approves nothing and is sent nothing, so it is no unit of
# units.yaml: its leaders' accounts belong to this code, and read every project without acting on any
MANAGEMENT_COMMITTEE = "management_committee"
MANAGEMENT_COMMITTEE_NAME = "管委会"
USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{2,39}$")
MIN_PASSWORD = 10


class Role(StrEnum):
    GOV_SERVICE = "gov_service"
    ECON_DEV = "econ_dev"
    DEPARTMENT = "department"
    SERVICE_COMPANY = "service_company"
    RECRUITING = "recruiting"
    LEADER = "leader"


ROLE_NAMES_ZH = {
    Role.GOV_SERVICE: "政务服务局", Role.ECON_DEV: "经济发展招商服务局", Role.DEPARTMENT: "承办部门",
    Role.SERVICE_COMPANY: "政联公司", Role.RECRUITING: "招引单位",
    Role.LEADER: "管委会领导（只读）",
}


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message (Chinese) says why."""


def check_role(role: Role, unit: str, units: Mapping[str, Unit]) -> None:
    """The role must fit the unit: 政务服务局 and 经发局 are those bureaus, 政联公司 a service company,
    a leader (管委会, read-only) belongs to ``MANAGEMENT_COMMITTEE`` and nothing else does."""
    if role is Role.LEADER and unit != MANAGEMENT_COMMITTEE:
        raise AccountError(f"角色 {role.value}（{ROLE_NAMES_ZH[role]}）只能属于单位 {MANAGEMENT_COMMITTEE}"
                           f"（{MANAGEMENT_COMMITTEE_NAME}）")
    if role is not Role.LEADER and unit == MANAGEMENT_COMMITTEE:
        raise AccountError(f"单位 {MANAGEMENT_COMMITTEE}（{MANAGEMENT_COMMITTEE_NAME}）只能开设角色 leader"
                           f"（{ROLE_NAMES_ZH[Role.LEADER]}）的账号，不能办理事项")
    if role is Role.LEADER:
        return
    if unit not in units:
        raise AccountError(f"单位 {unit!r} 不在单位名录（units.yaml）中")
    if role is Role.GOV_SERVICE and unit != GOV_SERVICE_BUREAU:
        raise AccountError(f"角色 {role.value}（政务服务局）只能属于单位 {GOV_SERVICE_BUREAU}")
    if role is Role.ECON_DEV and unit != ECON_DEV_BUREAU:
        raise AccountError(f"角色 {role.value}（经济发展招商服务局）只能属于单位 {ECON_DEV_BUREAU}")
    if role is Role.SERVICE_COMPANY and units[unit].kind is not UnitKind.SERVICE_COMPANY:
        raise AccountError(f"角色 {role.value}（政联公司）只能属于服务公司类单位，{unit} 不是")
    if role is Role.RECRUITING and not units[unit].recruits:
        raise AccountError(f"角色 {role.value}（项目招引单位）只能属于 units.yaml 中可招引项目（recruits: true）的单位，"
                           f"{unit} 不是")


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    unit: str
    role: Role
    active: bool
    session_version: int

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Account:
        return cls(username=doc.get("username", doc["_id"]), display_name=doc["display_name"], unit=doc["unit"],
                   role=Role(doc["role"]), active=doc["active"], session_version=doc["session_version"])


class Accounts:
    """Accounts in the store: add, disable, reset, and checking a password."""

    def __init__(self, store: Store, hasher: PasswordHasher | None = None) -> None:
        self._users = store.db[USERS.name]
        self._changes = store.db[CHANGES.name]
        self._hasher = hasher or PasswordHasher()
        # verifying against this when the account does not exist takes as long as a real check
        self._dummy = self._hasher.hash("zeroerrand-no-such-account")

    async def _current(self, username: str, projection: dict[str, int] | None = None) -> dict[str, Any] | None:
        """The account's highest version (None: no such account). Versions follow one another
        without a gap (each change is made on the one before), so they are looked for by ``_id``
        from the last one known, ``PROBE`` at a time."""
        added = await self._users.find_one({"_id": username}, projection)
        if added is None:
            return None
        current, start = added, max(int(added["session_version"]), int(added.get("latest") or 0))
        while True:
            ids = [f"{username}#{version}" for version in range(start, start + PROBE)]
            # by ``_id`` one each (at once): the embedded store pushes no ``$in`` down, and would read
            # every change of every account at each request of the console
            docs = await asyncio.gather(*(self._changes.find_one({"_id": i}, projection) for i in ids))
            found = {int(doc["session_version"]): doc for doc in docs if doc is not None}
            if not found:
                return current
            start = max(found)
            current = found[start]
            if start < int(ids[-1].rpartition("#")[2]):
                return current

    async def _change(self, username: str, change: Callable[[dict[str, Any]], dict[str, Any] | None],
                      now: datetime | None) -> dict[str, Any] | None:
        """Stores the next version of the account: ``change`` of its current state (None: nothing to
        change, nothing stored). A change made at the same moment on the same version loses the
        insert and is made again on the version that won. ``AccountError`` if there is no account."""
        for _ in range(CHANGE_TRIES):
            current = await self._current(username)
            if current is None:
                raise AccountError(f"没有用户 {username}")
            changed = change(current)
            if changed is None:
                return None
            version = int(current["session_version"]) + 1
            doc = {**{key: current[key] for key in STATE if key in current}, **changed, "_id": f"{username}#{version}",
                   "username": username, "session_version": version, "updated_at": now or datetime.now(UTC)}
            try:
                await self._changes.insert_one(doc)
            except DuplicateKeyError:
                continue
            # where to look first next time; only ever a hint (it may be written back lower)
            await self._users.update_one({"_id": username}, {"$max": {"latest": version}})
            return doc
        raise AccountError(f"用户 {username} 正被同时修改，请稍后再试")

    @staticmethod
    def check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"密码太短：至少 {MIN_PASSWORD} 个字符")
        if len(password) > 200:
            raise AccountError("密码太长：至多 200 个字符")

    async def add(self, username: str, display_name: str, unit: str, role: Role, password: str,
                  units: Mapping[str, Unit], now: datetime | None = None) -> Account:
        if not USERNAME.match(username):
            raise AccountError(f"用户名 {username!r} 不合规：小写字母开头，3–40 个小写字母、数字或 _ . -")
        if not display_name.strip() or len(display_name) > 100 or not display_name.isprintable():
            raise AccountError("姓名须为 1–100 个可打印字符")
        check_role(role, unit, units)
        self.check_password(password)
        now = now or datetime.now(UTC)
        doc = {"_id": username, "display_name": display_name.strip(), "unit": unit, "role": role.value, "active": True,
               "session_version": 1, "password_hash": self._hasher.hash(password), "created_at": now,
               "updated_at": now}
        try:
            await self._users.insert_one(doc)
        except DuplicateKeyError:
            raise AccountError(f"用户 {username} 已存在（要改密码请用 zeroerrand users reset）") from None
        return Account.from_doc(doc)

    async def get(self, username: str) -> Account | None:
        doc = await self._current(username, {"password_hash": 0})
        return None if doc is None else Account.from_doc(doc)

    async def list(self) -> list[Account]:
        names = [str(d["_id"]) async for d in self._users.find({}, {"_id": 1}).sort("_id", ASCENDING)]
        return [account for name in names if (account := await self.get(name)) is not None]

    async def set_active(self, username: str, active: bool, now: datetime | None = None) -> Account:
        doc = await self._change(username, lambda _: {"active": active}, now)
        assert doc is not None
        return Account.from_doc(doc)

    async def end_sessions(self, username: str, version: int, now: datetime | None = None) -> bool:
        """Signing out: the session cookie is signed, not stored, so clearing it in the browser leaves
        any copy of it valid until it expires; bumping the version ends every session of the account
        made so far (its person's other browsers too). Only a session still current may do it (False:
        the version had moved on, which ended the session already)."""
        try:
            return await self._change(username, lambda current: {} if current["session_version"] == version else None,
                                      now) is not None
        except AccountError:
            return False

    async def reset(self, username: str, password: str, now: datetime | None = None) -> Account:
        """A new password; every session of the account ends (the account is enabled again)."""
        self.check_password(password)
        hashed = self._hasher.hash(password)
        doc = await self._change(username, lambda _: {"password_hash": hashed, "active": True}, now)
        assert doc is not None
        return Account.from_doc(doc)

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password is right and the account is active; else None (same time either way)."""
        doc = await self._current(username) if USERNAME.match(username) else None
        try:
            self._hasher.verify(doc["password_hash"] if doc else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        if doc is None or not doc["active"]:
            return None
        return Account.from_doc(doc)


@dataclass(frozen=True)
class Attempt:
    """A try counted by ``Attempts.take``: ``wait`` is how long until tries are allowed again (None: go
    ahead); ``ids`` are its records, given back by ``Attempts.refund`` when it succeeds."""

    wait: timedelta | None
    ids: tuple[str, ...]


class Attempts:
    """Tries per key in fixed windows, one record per try and key (never a counter).

    ``take`` records a try before it is made and then counts the window's records: a try that finds
    more than ``limit`` is refused (and its records removed), one that succeeds is given back with
    ``refund``, and one that fails stays counted. Inserting a record with a unique id is atomic on
    every store; a ``$inc`` on one counter is not on the embedded store (FerretDB 1.24 loses
    concurrent increments: 50 at once left 7), and checking before counting let a burst of
    concurrent tries all pass the check before the first failure was counted. Each try's own record
    is in the count it sees, so at most ``limit`` tries per key and window are ever made, however
    many arrive at once. ``blocked`` and ``failed`` read and add records without taking a try.
    """

    def __init__(self, store: Store, limit: int, window_s: int) -> None:
        self._attempts = store.db[ATTEMPTS.name]
        self.limit, self.window_s = limit, window_s

    def _window(self, key: str, now: datetime) -> tuple[str, datetime]:
        start = int(now.timestamp()) // self.window_s * self.window_s
        return f"{key}@{start}", datetime.fromtimestamp(start + self.window_s, UTC)

    async def _count(self, window: str) -> int:
        """The window's records, up to one over the limit (a ``find`` on the index: see ``unread_count``)."""
        found = self._attempts.find({"window": window}, {"_id": 1}).limit(self.limit + 1)
        return len([doc async for doc in found])

    async def _add(self, keys: list[str], now: datetime) -> list[tuple[str, str, datetime]]:
        await self._attempts.delete_many({"expires_at": {"$lte": now}})
        added = []
        for key in keys:
            window, ends = self._window(key, now)
            record = uuid.uuid4().hex
            await self._attempts.insert_one({"_id": record, "window": window, "expires_at": ends})
            added.append((record, window, ends))
        return added

    async def take(self, keys: list[str], now: datetime | None = None) -> Attempt:
        """Records a try against every key, then says whether it may be made."""
        now = now or datetime.now(UTC)
        added = await self._add(keys, now)
        waits = [ends - now for _, window, ends in added if await self._count(window) > self.limit]
        ids = tuple(record for record, _, _ in added)
        if waits:
            for record in ids:  # by ``_id`` (no ``$in``, which the embedded store would answer by a scan)
                await self._attempts.delete_one({"_id": record})
            return Attempt(wait=max(waits), ids=())
        return Attempt(wait=None, ids=ids)

    async def refund(self, attempt: Attempt) -> None:
        """A try that succeeded is not a failure: its records go."""
        if attempt.ids:
            await self._attempts.delete_many({"_id": {"$in": list(attempt.ids)}})

    async def blocked(self, keys: list[str], now: datetime | None = None) -> timedelta | None:
        """How long until the next try is allowed, if any key reached the limit in this window."""
        now = now or datetime.now(UTC)
        for key in keys:
            window, ends = self._window(key, now)
            if await self._count(window) >= self.limit:
                return ends - now
        return None

    async def failed(self, keys: list[str], now: datetime | None = None) -> None:
        """Counts a failed try that was not taken with ``take``."""
        await self._add(keys, now or datetime.now(UTC))
