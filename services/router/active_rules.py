"""The rules version in force, and swapping it for a new one only when the new one is good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from services.common.messages import MAX_PROBLEM_CHARS, MAX_PROBLEMS, RulesActivated, RulesRejected, stable_id
from services.common.rule_files import load_rulebook, read_rule_files, rules_version
from services.common.yaml_files import Problem, RulesError
from services.router.candidate import check_candidate
from services.router.rule_engine import RoutingEngine
from services.router.rules_check import check_rules

log = logging.getLogger(__name__)


def load_checked(directory: Path) -> RoutingEngine:
    """Loads, validates and statically checks the rule files in this process; raises ``RulesError``
    on any problem (the CLI and tests; the router checks candidates in a bounded child instead)."""
    book = load_rulebook(directory)
    engine = RoutingEngine(book)
    report = check_rules(book, engine)
    if not report.ok:
        raise RulesError(report.problems)
    return engine


def announced_problems(problems: tuple[str, ...]) -> tuple[str, ...]:
    """What ``rules.rejected`` lists: the first problems, each cut to a length, and how many more
    there are (the router's log has every one), so the event stays small whatever the files hold."""
    def cut(text: str) -> str:
        return text if len(text) <= MAX_PROBLEM_CHARS else text[:MAX_PROBLEM_CHARS - 1] + "…"
    if len(problems) <= MAX_PROBLEMS:
        return tuple(cut(p) for p in problems)
    shown = tuple(cut(p) for p in problems[:MAX_PROBLEMS - 1])
    return (*shown, f"……另有 {len(problems) - len(shown)} 个问题，见路由服务日志 / more problems in the router's log")


class ActiveRules:
    """Holds the engine of the last good rules; ``reload`` replaces it only with checked rules.

    A candidate is read once; its bytes are checked in a child process bounded by ``timeout_s``
    and ``memory_bytes`` (``services.router.candidate``), and only bytes that passed are built into
    the new engine, so nothing an operator saves can stall or exhaust the routing process.
    """

    def __init__(self, directory: Path, *, timeout_s: float = 3.0, memory_bytes: int = 512 * 2**20) -> None:
        self.directory = Path(directory)
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._engine: RoutingEngine | None = None
        self._lock = asyncio.Lock()
        self.contents: dict[str, bytes] = {}  # the bytes of the rule files in force (archived by the router)

    @property
    def engine(self) -> RoutingEngine:
        if self._engine is None:
            raise RuntimeError("no rules are active yet")
        return self._engine

    @property
    def version(self) -> str | None:
        return self._engine.version if self._engine else None

    async def reload(self, timeout_s: float | None = None) -> RulesActivated | RulesRejected | None:
        """Tries the files on disk. ``None`` when they are the version already in force."""
        async with self._lock:
            now = datetime.now(UTC)
            try:
                contents = await asyncio.to_thread(read_rule_files, self.directory)
            except RulesError as exc:
                return self._rejected(now, None, exc.problems)
            attempted = rules_version(contents.items())
            if attempted == self.version:
                return None
            problems = await check_candidate(self.directory, contents, timeout_s=timeout_s or self.timeout_s,
                                             memory_bytes=self.memory_bytes)
            if problems:
                return self._rejected(now, attempted, problems)
            try:  # the same bytes the child passed, so as bounded as they proved to be
                book = await asyncio.to_thread(load_rulebook, self.directory, contents)
            except RulesError as exc:
                return self._rejected(now, attempted, exc.problems)
            engine = RoutingEngine(book)
            previous = self.version
            self._engine = engine
            self.contents = dict(contents)
            log.info("rules version %s active (was %s)", engine.version, previous)
            return RulesActivated(
                event_id=stable_id("rules.activated", engine.version, now.isoformat()),
                occurred_at=now, recorded_at=now, version=engine.version, previous_version=previous,
                directory=str(self.directory), rules=len(engine.book.rules), items=len(engine.book.catalog),
            )

    def _rejected(self, now: datetime, attempted: str | None, found: Sequence[Problem]) -> RulesRejected:
        problems = tuple(str(p) for p in found)
        log.error("rules rejected (%s problems), keeping version %s:\n%s", len(problems), self.version,
                  "\n".join(problems))
        return RulesRejected(
            event_id=stable_id("rules.rejected", str(attempted), str(self.version), now.isoformat()),
            occurred_at=now, recorded_at=now, attempted_version=attempted, active_version=self.version,
            directory=str(self.directory), problems=announced_problems(problems),
        )
