"""The rules version in force, and swapping it for a new one only when the new one is good."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from services.common.messages import MAX_PROBLEM_CHARS, MAX_PROBLEMS, RulesActivated, RulesRejected, stable_id
from services.common.rule_engine import RoutingEngine
from services.common.rule_files import RULE_FILES, RulesError, load_rulebook, rules_version
from services.common.rules_check import check_rules

log = logging.getLogger(__name__)


def load_checked(directory: Path) -> RoutingEngine:
    """Loads, validates and statically checks the rule files; raises ``RulesError`` on any problem."""
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


def _attempted_version(directory: Path) -> str | None:
    try:
        return rules_version((name, (directory / name).read_bytes()) for name in RULE_FILES)
    except OSError:
        return None


class ActiveRules:
    """Holds the engine of the last good rules; ``reload`` replaces it only with checked rules."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._engine: RoutingEngine | None = None

    @property
    def engine(self) -> RoutingEngine:
        if self._engine is None:
            raise RuntimeError("no rules are active yet")
        return self._engine

    @property
    def version(self) -> str | None:
        return self._engine.version if self._engine else None

    def reload(self) -> RulesActivated | RulesRejected | None:
        """Tries the files on disk. ``None`` when they are the version already in force."""
        now = datetime.now(UTC)
        attempted = _attempted_version(self.directory)
        if attempted is not None and attempted == self.version:
            return None
        try:
            engine = load_checked(self.directory)
        except RulesError as exc:
            problems = tuple(str(p) for p in exc.problems)
            log.error("rules rejected (%s problems), keeping version %s:\n%s", len(problems), self.version,
                      "\n".join(problems))
            return RulesRejected(
                event_id=stable_id("rules.rejected", str(attempted), str(self.version), now.isoformat()),
                occurred_at=now, recorded_at=now, attempted_version=attempted, active_version=self.version,
                directory=str(self.directory), problems=announced_problems(problems),
            )
        previous = self.version
        self._engine = engine
        log.info("rules version %s active (was %s)", engine.version, previous)
        return RulesActivated(
            event_id=stable_id("rules.activated", engine.version, now.isoformat()),
            occurred_at=now, recorded_at=now, version=engine.version, previous_version=previous,
            directory=str(self.directory), rules=len(engine.book.rules), items=len(engine.book.catalog),
        )
