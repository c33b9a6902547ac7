"""One project, one record: the agreements the router took, kept in the store (``router_agreements``).

The router decides what reaches ``zeroerrand.items``, and a downstream system cannot un-see an
item, so the checks that keep a project to one record are made here, before anything is published:

* an agreement id is taken once, for one content (its *fingerprint*: everything but the envelope);
  the same id with the same content again is a redelivery (routed again under the same ids), with
  other content it is rejected;
* a project code is signed once (revision 0); a second agreement for it must be a 补充协议
  (``agreement.amended``), which takes the next revision of the project's plan.

Both are claimed by one insert: ``_id`` is the agreement id, and a unique index on (project code,
revision) makes the revision a claim, the one conditional write every store makes atomic (see
docs/concurrency.md). Of two first agreements for one code, or two amendments of one revision,
exactly one is stored; the other reads the project again and is decided again.

Each record holds the plan as that agreement left it (the lines, not the routing), which is what
the next amendment is compared with. What then happened to the lines (withdrawn or kept because
accepted) is the ledger's to decide and record; this is only the router's admission record.
``zeroerrand sign`` reads it (and ``router_refusals``, the router's latest refusal of an agreement's
content) to tell the operator what became of the agreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common.domain import Request
from services.common.messages import AnyAgreement
from services.common.storage import Collection, Store

AGREEMENTS = Collection("router_agreements", (
    IndexModel([("project_code", ASCENDING), ("revision", ASCENDING)], unique=True, name="one_agreement_per_revision"),))
REFUSALS = Collection("router_refusals")
COLLECTIONS = (AGREEMENTS, REFUSALS)

ENVELOPE = frozenset({"type", "event_id", "occurred_at", "recorded_at"})


def fingerprint(agreement: AnyAgreement) -> str:
    """What makes an agreement the same agreement: its kind and content, not when it was sent."""
    body = agreement.model_dump_json(exclude=set(ENVELOPE))
    return hashlib.sha256(f"{agreement.type}\n{body}".encode()).hexdigest()


def refusal_id(agreement_id: str, print_: str) -> str:
    return f"{agreement_id}#{print_[:16]}"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Line(_Record):
    item: str
    request: Request = Request.HANDLE


class Admission(_Record):
    """An agreement the router took: revision 0 is the project's first agreement, 1… its amendments."""

    agreement_id: str
    project_code: str
    revision: int
    kind: Literal["agreement.signed", "agreement.amended"]
    fingerprint: str
    plan: tuple[Line, ...]
    recruiting_unit: str
    credit_code: str
    recorded_at: datetime

    @property
    def lines(self) -> frozenset[tuple[str, Request]]:
        return frozenset((line.item, line.request) for line in self.plan)


class Refusal(_Record):
    """The router's latest refusal of an agreement's content (for the CLI; the event says it too)."""

    agreement_id: str
    fingerprint: str
    reason_code: str
    reasons: tuple[str, ...]
    event_id: str
    recorded_at: datetime


Added = Literal["added", "agreement_taken", "revision_taken"]


class AgreementRegistry(Protocol):
    async def agreement(self, agreement_id: str) -> Admission | None: ...
    async def project(self, project_code: str) -> list[Admission]:
        """Every admission of the project, by revision."""
    async def add(self, admission: Admission) -> Added:
        """Stores the admission unless its agreement id or its project's revision is taken."""
    async def refused(self, refusal: Refusal) -> None:
        """Keeps the latest refusal of an agreement's content (best effort: the event is what counts)."""
    async def refusal(self, agreement_id: str, print_: str) -> Refusal | None: ...
    async def close(self) -> None:
        """Closes what the registry opened (the store, if it opened one)."""


def _load(model: type[Any], doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    return model.model_validate({k: v for k, v in doc.items() if k != "_id"})


class MongoAgreementRegistry:
    """On MongoDB or the embedded store; the store is opened at first use (``open_store``)."""

    def __init__(self, open_store: Callable[[], Awaitable[Store]]) -> None:
        self._open = open_store
        self._store: Store | None = None
        self._opening = asyncio.Lock()

    async def _db(self) -> Any:
        if self._store is None:
            # one store for all: the first agreements arrive together, and each opening its own left
            # all but one of them open (they kept the embedded store running after `up` had stopped)
            async with self._opening:
                if self._store is None:
                    self._store = await self._open()
        return self._store.db

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    async def agreement(self, agreement_id: str) -> Admission | None:
        db = await self._db()
        return _load(Admission, await db[AGREEMENTS.name].find_one({"_id": agreement_id}))  # type: ignore[no-any-return]

    async def project(self, project_code: str) -> list[Admission]:
        db = await self._db()
        return [_load(Admission, d) async for d in db[AGREEMENTS.name].find({"project_code": project_code})
                .sort("revision", ASCENDING)]

    async def add(self, admission: Admission) -> Added:
        db = await self._db()
        try:
            await db[AGREEMENTS.name].insert_one({"_id": admission.agreement_id, **admission.model_dump(mode="json")})
        except DuplicateKeyError:
            return "agreement_taken" if await self.agreement(admission.agreement_id) is not None else "revision_taken"
        return "added"

    async def refused(self, refusal: Refusal) -> None:
        db = await self._db()
        key = refusal_id(refusal.agreement_id, refusal.fingerprint)
        # concurrent upserts of one missing document can fail on the embedded store: either one is right
        with contextlib.suppress(DuplicateKeyError):
            await db[REFUSALS.name].replace_one({"_id": key}, {"_id": key, **refusal.model_dump(mode="json")},
                                                upsert=True)

    async def refusal(self, agreement_id: str, print_: str) -> Refusal | None:
        db = await self._db()
        return _load(Refusal, await db[REFUSALS.name].find_one({"_id": refusal_id(agreement_id, print_)}))  # type: ignore[no-any-return]


class MemoryAgreementRegistry:
    """The in-memory fake (and the registry of a router run with ``ZEROERRAND_ROUTER_AGREEMENT_REGISTRY=memory``:
    one process, forgotten when it stops; for tests and a developer's machine only)."""

    def __init__(self) -> None:
        self.admissions: dict[str, dict[str, Any]] = {}
        self.refusals: dict[str, dict[str, Any]] = {}

    async def close(self) -> None:
        return None

    async def agreement(self, agreement_id: str) -> Admission | None:
        return _load(Admission, copy.deepcopy(self.admissions.get(agreement_id)))  # type: ignore[no-any-return]

    async def project(self, project_code: str) -> list[Admission]:
        found = [_load(Admission, copy.deepcopy(d)) for d in self.admissions.values() if d["project_code"] == project_code]
        return sorted(found, key=lambda a: a.revision)

    async def add(self, admission: Admission) -> Added:
        if admission.agreement_id in self.admissions:
            return "agreement_taken"
        if any(a.revision == admission.revision for a in await self.project(admission.project_code)):
            return "revision_taken"
        self.admissions[admission.agreement_id] = admission.model_dump(mode="json")
        return "added"

    async def refused(self, refusal: Refusal) -> None:
        self.refusals[refusal_id(refusal.agreement_id, refusal.fingerprint)] = refusal.model_dump(mode="json")

    async def refusal(self, agreement_id: str, print_: str) -> Refusal | None:
        return _load(Refusal, copy.deepcopy(self.refusals.get(refusal_id(agreement_id, print_))))  # type: ignore[no-any-return]
