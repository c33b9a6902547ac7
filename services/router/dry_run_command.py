"""What ``zeroerrand rules dry-run`` does around the comparison: checks the candidate with the
bounded check the router uses, loads both rule sets, reads the items (the ledger in the store, or
an export), shows a progress bar on large runs, and says which exit code the result means."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.rule_files import load_rulebook, read_rule_files, rules_version
from services.common.yaml_files import Problem, RulesError
from services.router.dry_run import DryRunReport, Subject, compare, read_items, subject_from
from services.router.rule_engine import RoutingEngine

EXIT_UNCHANGED, EXIT_INVALID, EXIT_CHANGED = 0, 1, 3
PROGRESS_FROM = 10_000  # items: a smaller run is over before a bar would help
ENGINE_CACHE = 4096


@dataclass(frozen=True)
class DryRunOutcome:
    exit_code: int
    candidate_version: str | None
    problems: tuple[Problem, ...] = ()
    report: DryRunReport | None = None
    error: str | None = None  # the active rules or the items could not be read

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"exit_code": self.exit_code, "candidate_version": self.candidate_version,
                                "check": {"ok": not self.problems, "problems": [
                                    {"file": p.file, "line": p.line, "subject": p.subject, "message": p.message,
                                     "text": str(p)} for p in self.problems]}}
        if self.error is not None:
            data["error"] = self.error
        if self.report is not None:
            data |= self.report.as_json()
        return data


def check_candidate_dir(directory: Path, *, timeout_s: float, memory_bytes: int) -> tuple[str | None, tuple[Problem, ...],
                                                                                          dict[str, bytes]]:
    """The candidate's version, its problems (the router's bounded check, file:line) and its bytes."""
    from services.router.candidate import check_candidate

    try:
        contents = read_rule_files(directory)
    except RulesError as exc:
        return None, tuple(exc.problems), {}
    problems = asyncio.run(check_candidate(directory, contents, timeout_s=timeout_s, memory_bytes=memory_bytes))
    return rules_version(contents.items()), tuple(problems), contents


def engine_for(directory: Path, contents: dict[str, bytes] | None = None, *, memo: bool = True) -> RoutingEngine:
    """The engine of checked rule files (``RulesError`` if they are not valid)."""
    from services.router.rules_check import check_rules

    book = load_rulebook(directory, contents)
    engine = RoutingEngine(book, cache_size=ENGINE_CACHE if memo else 0)
    if contents is None:  # not checked by the bounded check: check here
        report = check_rules(book, engine)
        if not report.ok:
            raise RulesError(report.problems)
    return engine


def ledger_subjects() -> list[Subject]:
    """Every item the ledger holds, read from the store."""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS
    from services.evaluation.rules_items import ledger_items

    async def read() -> list[Subject]:
        async with store_session(collections=COLLECTIONS) as store:
            return [subject_from(record) async for record in ledger_items(store)]

    return asyncio.run(read())


def file_subjects(path: Path) -> tuple[Iterator[Subject], int]:
    """The subjects of an export, lazily, and how many lines it has (for the progress bar)."""
    with path.open("rb") as lines:  # counted as bytes: read_items says where a line is not text
        total = sum(1 for line in lines if line.strip())
    return read_items(path), total


def progress_bar(total: int) -> tuple[AbstractContextManager[Any], Callable[[int], None] | None]:
    """A Rich progress bar on standard error for a run of ``total`` items (none for a small run or
    when standard error is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if total < PROGRESS_FROM or not console.is_terminal:
        return nullcontext(), None
    bar = Progress(TextColumn("按候选规则重新决策"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True)
    task = bar.add_task("dry-run", total=total)
    return bar, lambda done: bar.update(task, completed=done)


def dry_run(candidate_dir: Path, active_dir: Path, items: Path | None, *, timeout_s: float, memory_bytes: int,
            memo: bool = True, subjects: Iterable[Subject] | None = None, total: int | None = None) -> DryRunOutcome:
    """Checks the candidate, then compares it with the active rules over the items."""
    version, problems, contents = check_candidate_dir(candidate_dir, timeout_s=timeout_s, memory_bytes=memory_bytes)
    if problems:
        return DryRunOutcome(EXIT_INVALID, version, problems)
    candidate = engine_for(candidate_dir, contents, memo=memo)
    try:
        active = engine_for(active_dir, memo=memo)
    except RulesError as exc:
        return DryRunOutcome(EXIT_INVALID, version, error="当前生效的规则无法读取 / active rules unreadable: "
                             + "；".join(str(p) for p in exc.problems[:5]))
    if subjects is None:
        if items is not None:
            subjects, total = file_subjects(items)
        else:
            found = ledger_subjects()
            subjects, total = found, len(found)
    bar, progress = progress_bar(total or 0)
    with bar:
        report = compare(active, candidate, subjects, memo=memo, progress=progress)
    return DryRunOutcome(EXIT_CHANGED if report.changed else EXIT_UNCHANGED, version, report=report)


def problem_lines(outcome: DryRunOutcome) -> Sequence[str]:
    return [f"候选规则未通过检查（版本 {outcome.candidate_version or '无法读取'}），发现 {len(outcome.problems)} 个问题："] + [
        f"  {p}" for p in outcome.problems]
