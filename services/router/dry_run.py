"""``zeroerrand rules dry-run``: what candidate rules would decide differently from the active ones.

Pure comparison, no I/O: every item (a ledger line, a parked item, or a line of an export) is
decided under both rule sets with the project facts it was routed with, and the decisions that
differ are grouped by item and by old → new service mode and unit, with a few example projects
and every open item they would touch. Where the items come from is the caller's business
(``services.evaluation.rules_items`` reads the ledger; :func:`read_items` reads an export).

The **decision memo**: two items of the same catalog code, request and values of the facts either
rule set tests get the same two decisions, so each such combination is decided once (a year's
items repeat a few thousand combinations). ``memo=False`` decides every item afresh under both
engines (their own caches off), which the benchmark measures beside it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from services.common.domain import Code, Decision, Request, Unroutable
from services.common.messages import FactValue
from services.common.rule_files import PROJECT_PREFIX
from services.router.rule_engine import RoutingEngine, relevant_fields

MAX_EXAMPLES = 3
PROGRESS_EVERY = 1000


class ItemsFileError(ValueError):
    """A line of an ``--items`` export that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Subject:
    """One item to decide again: its project's facts (names without ``project.``), its ledger state
    if known, and the rules version that routed it."""

    project_code: str
    item_code: str
    request: Request
    facts: Mapping[str, Any]
    state: str | None = None  # a ledger state, "unroutable" for a parked item, None if unknown
    open: bool | None = None
    rules_version: str | None = None
    facts_complete: bool = True  # False: only the facts of its decision record are known


class _Line(BaseModel):
    """What a line must hold, whatever else it has: the codes as text, the facts as a project's facts
    (a yes/no, a finite number, a line of text), the request one of the known."""

    model_config = ConfigDict(extra="ignore")
    project_code: Code
    item_code: Code
    request: Request | None = None
    facts: dict[str, FactValue] | None = Field(default=None, max_length=200)
    state: str | None = None
    open: bool | None = None
    rules_version: str | None = None


_RECORD_FACTS: TypeAdapter[dict[str, FactValue]] = TypeAdapter(dict[str, FactValue])


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


def subject_from(data: Mapping[str, Any]) -> Subject:
    """A subject from one exported line (``ledger_items`` export, a ``RoutedItem`` / ``approval.item``
    body or an ``item.unroutable`` event). ``facts`` are the project's facts; without them the
    facts of the decision record (``project.<fact>``) stand in. ``ValueError`` says what is wrong."""
    try:
        _Line.model_validate(data)
        record_facts = (data.get("decision") or data.get("unroutable") or {})
        if not isinstance(record_facts, Mapping):
            raise ValueError("decision 须为对象 / decision must be an object")
        recorded = record_facts.get("facts") or {}
        if not isinstance(recorded, Mapping):
            raise ValueError("decision.facts 须为对象 / decision.facts must be an object")
        _RECORD_FACTS.validate_python({k: v for k, v in recorded.items() if str(k).startswith(PROJECT_PREFIX)})
    except ValidationError as exc:
        raise ValueError(_problem(exc)) from None
    facts = data.get("facts")
    complete = isinstance(facts, Mapping)
    if not complete:
        record = data.get("decision") or data.get("unroutable") or {}
        facts = {k.removeprefix(PROJECT_PREFIX): v for k, v in dict(record.get("facts") or {}).items()
                 if k.startswith(PROJECT_PREFIX)}
        complete = False
    assert isinstance(facts, Mapping)
    decision = data.get("decision") or data.get("unroutable") or {}
    state = data.get("state")
    if state is None and "unroutable" in data:
        state = "unroutable"
    is_open = data.get("open")
    return Subject(project_code=str(data["project_code"]), item_code=str(data["item_code"]),
                   request=Request(data.get("request") or Request.HANDLE.value),
                   facts={k.removeprefix(PROJECT_PREFIX): v for k, v in facts.items()}, state=state,
                   open=bool(is_open) if is_open is not None else None,
                   rules_version=data.get("rules_version") or decision.get("rules_version"),
                   facts_complete=complete)


def read_items(path: Path) -> Iterator[Subject]:
    """The subjects of an export, one JSON object a line (blank lines skipped)."""
    with path.open("rb") as lines:  # each line decoded alone, so an undecodable one is named
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ItemsFileError(
                    f"{path}:{number}: 不是 UTF-8 文本（该行第 {exc.start + 1} 个字节）/ not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise TypeError("不是 JSON 对象 / not an object")
                yield subject_from(data)
            except json.JSONDecodeError as exc:
                raise ItemsFileError(f"{path}:{number}: 不是 JSON（第 {exc.colno} 列：{exc.msg}）/ not JSON") from None
            except RecursionError:
                raise ItemsFileError(f"{path}:{number}: JSON 嵌套过深 / nested too deep") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise ItemsFileError(f"{path}:{number}: 不是可读的事项记录（须为一行一个 JSON 对象，含 project_code、"
                                     f"item_code、facts）：{exc}") from None


@dataclass(frozen=True)
class Outcome:
    """What a rule set decides for an item, as far as it matters to who serves it."""

    routable: bool
    mode: str | None = None
    unit: str | None = None
    authority: str | None = None
    task_order: bool | None = None
    rule: str | None = None
    reason_code: str | None = None

    @classmethod
    def of(cls, decision: Decision | Unroutable) -> Outcome:
        if isinstance(decision, Unroutable):
            return cls(routable=False, reason_code=decision.reason_code)
        return cls(routable=True, mode=decision.mode.value, unit=decision.responsible_unit,
                   authority=decision.approving_authority, task_order=decision.task_order, rule=decision.rule_id)

    @property
    def key(self) -> tuple[Any, ...]:
        """What tells two decisions apart (a rule renamed alone changes nothing for anyone)."""
        if not self.routable:
            return (False, self.reason_code)
        return (True, self.mode, self.unit, self.authority, self.task_order)

    def label(self, other: Outcome | None = None) -> str:
        """``mode.unit``; with the approving authority and the task order where they differ from ``other``."""
        if not self.routable:
            return f"不可分派（{self.reason_code}）"
        extra = []
        if other is not None and other.routable and other.authority != self.authority:
            extra.append(f"审批机关 {self.authority}")
        if other is not None and other.routable and other.task_order != self.task_order:
            extra.append("下发任务单" if self.task_order else "不下发任务单")
        return f"{self.mode}.{self.unit}" + (f"（{'，'.join(extra)}）" if extra else "")

    def as_json(self) -> dict[str, Any]:
        if not self.routable:
            return {"routable": False, "reason_code": self.reason_code}
        return {"routable": True, "mode": self.mode, "unit": self.unit, "authority": self.authority,
                "task_order": self.task_order, "rule": self.rule}


@dataclass
class Change:
    """Every item whose decision goes from ``old`` to ``new``, for one catalog item and request."""

    item_code: str
    request: Request
    old: Outcome
    new: Outcome
    count: int = 0
    examples: list[str] = field(default_factory=list)
    open_projects: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)  # every one (the JSON lists them; the text shows examples)

    def as_json(self) -> dict[str, Any]:
        return {"item_code": self.item_code, "request": self.request.value, "from": self.old.as_json(),
                "to": self.new.as_json(), "count": self.count, "examples": self.examples,
                "open_items": self.open_projects, "projects": self.projects}


@dataclass
class DryRunReport:
    active_version: str
    candidate_version: str
    items: int = 0
    changed: int = 0
    open_changed: int = 0
    became_unroutable: int = 0
    became_routable: int = 0
    facts_incomplete: int = 0
    changes: dict[tuple[Any, ...], Change] = field(default_factory=dict)
    seconds: float = 0.0
    memo: bool = True
    decisions: int = 0  # pairs of decisions actually made (the memo makes fewer)

    def ordered(self) -> list[Change]:
        return sorted(self.changes.values(), key=lambda c: (-c.count, c.item_code, c.request.value, c.old.label()))

    def as_json(self) -> dict[str, Any]:
        return {"active_version": self.active_version, "candidate_version": self.candidate_version,
                "items": self.items, "changed": self.changed, "open_changed": self.open_changed,
                "became_unroutable": self.became_unroutable, "became_routable": self.became_routable,
                "facts_incomplete": self.facts_incomplete, "changes": [c.as_json() for c in self.ordered()],
                "seconds": round(self.seconds, 3), "memo": self.memo, "decisions": self.decisions}


class _Decider:
    """Both decisions for a subject, memoised by what either rule set can tell apart."""

    def __init__(self, active: RoutingEngine, candidate: RoutingEngine, memo: bool) -> None:
        self.active, self.candidate, self.memo = active, candidate, memo
        self._fields: dict[str, tuple[str, ...]] = {}
        self._memo: dict[tuple[Any, ...], tuple[Outcome, Outcome]] = {}
        self.decisions = 0

    def _facts_of(self, item_code: str) -> tuple[str, ...]:
        names = self._fields.get(item_code)
        if names is None:
            found: set[str] = set()
            for engine in (self.active, self.candidate):
                item = engine.book.catalog.get(item_code)
                if item is not None:
                    found |= {f.removeprefix(PROJECT_PREFIX) for f in relevant_fields(engine.book, item)
                              if f.startswith(PROJECT_PREFIX)}
            names = self._fields[item_code] = tuple(sorted(found))
        return names

    def both(self, subject: Subject, now: datetime) -> tuple[Outcome, Outcome]:
        if not self.memo:
            return self._decide(subject, now)
        facts = subject.facts
        # the value's type is part of the key: 1 and True and 1.0 are told apart by the fact checks
        key = (subject.item_code, subject.request,
               *((type(facts.get(n)), facts.get(n)) for n in self._facts_of(subject.item_code)))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._decide(subject, now)
        return found

    def _decide(self, subject: Subject, now: datetime) -> tuple[Outcome, Outcome]:
        self.decisions += 1
        return (Outcome.of(self.active.decide(subject.item_code, subject.request, subject.facts, now=now)),
                Outcome.of(self.candidate.decide(subject.item_code, subject.request, subject.facts, now=now)))


def compare(active: RoutingEngine, candidate: RoutingEngine, subjects: Iterable[Subject], *, memo: bool = True,
            progress: Callable[[int], None] | None = None, clock: Callable[[], datetime] | None = None) -> DryRunReport:
    """Decides every subject under both engines and collects what differs. ``progress`` is told
    how many subjects are done, every ``PROGRESS_EVERY`` and at the end. Engines made with
    ``cache_size=0`` make ``memo=False`` decide every item in full."""
    started = datetime.now(UTC)
    now = (clock or (lambda: started))()
    report = DryRunReport(active_version=active.version, candidate_version=candidate.version, memo=memo)
    decider = _Decider(active, candidate, memo)
    t0 = time.perf_counter()
    done = 0
    for subject in subjects:
        done += 1
        if not subject.facts_complete:
            report.facts_incomplete += 1
        old, new = decider.both(subject, now)
        if old.key != new.key:
            _count(report, subject, old, new)
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    if progress is not None:
        progress(done)
    report.items = done
    report.decisions = decider.decisions
    report.seconds = time.perf_counter() - t0
    return report


def _count(report: DryRunReport, subject: Subject, old: Outcome, new: Outcome) -> None:
    report.changed += 1
    if old.routable and not new.routable:
        report.became_unroutable += 1
    elif new.routable and not old.routable:
        report.became_routable += 1
    group = (subject.item_code, subject.request, old.key, new.key)
    change = report.changes.get(group)
    if change is None:
        change = report.changes[group] = Change(subject.item_code, subject.request, old, new)
    change.count += 1
    change.projects.append(subject.project_code)
    if len(change.examples) < MAX_EXAMPLES and subject.project_code not in change.examples:
        change.examples.append(subject.project_code)
    if subject.open:
        report.open_changed += 1
        change.open_projects.append(subject.project_code)


def render(report: DryRunReport, problems: Sequence[str] = (), *, max_open: int = 20) -> list[str]:
    """The report as an operator reads it, in Chinese."""
    lines = [f"对比规则版本：当前生效 {report.active_version} → 候选 {report.candidate_version}",
             "候选规则静态检查：通过（无遗漏、无重叠）" if not problems else f"候选规则静态检查：{len(problems)} 个问题",
             f"共比较 {report.items:,} 个事项，决策改变 {report.changed:,} 个（其中未办结 {report.open_changed:,} 个）；"
             f"变为不可分派 {report.became_unroutable:,} 个，变为可分派 {report.became_routable:,} 个。"]
    if report.facts_incomplete:
        lines.append(f"注意：{report.facts_incomplete:,} 个事项的项目事实未完整保存，只按其决策记录中的事实判断。")
    if not report.changes:
        lines.append("候选规则不会改变任何事项的分派。")
        return lines
    lines.append("")
    lines.append("按事项分组（原服务方式.承办单位 → 新服务方式.承办单位）：")
    for change in report.ordered():
        consult = "（仅咨询）" if change.request is Request.CONSULT else ""
        lines.append(f"  {change.item_code}{consult}  {change.old.label(change.new)} → {change.new.label(change.old)}："
                     f"{change.count:,} 个；"
                     f"示例项目 {'、'.join(change.examples)}")
        if change.open_projects:
            shown = change.open_projects[:max_open]
            more = f" 等 {len(change.open_projects):,} 个" if len(change.open_projects) > len(shown) else ""
            lines.append(f"      受影响的未办结事项（项目）：{'、'.join(shown)}{more}")
    unroutable = [c for c in report.ordered() if c.old.routable and not c.new.routable]
    if unroutable:
        lines.append("")
        lines.append("将变为不可分派的事项：")
        for change in unroutable:
            lines.append(f"  {change.item_code}：{change.count:,} 个（{change.new.reason_code}），示例项目 "
                         f"{'、'.join(change.examples)}")
    if report.open_changed:
        lines.append("")
        lines.append("注意：规则生效后，上述未办结事项仍由分派它们的原规则版本决定的单位办理，不会自动重新分派；"
                     "如需按新规则改派尚未受理的事项，规则生效后运行 zeroerrand rules reroute --project 项目编码。")
    return lines
