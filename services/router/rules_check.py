"""Static checks run before a rules version goes live.

Every catalog item must route to exactly one rule, for both requests (handle / consult) and for
every value of the project facts the rules test: no gap, no overlap. A ``not_required`` rule
decides its cases like any other (the item is parked as not needed), so it covers them, and it
overlaps another rule like any other. The values tried are the
boundaries the rules themselves name (a threshold, just below it, just above it; every listed
value and one that is not listed; true and false), which is every distinct case the rules can
tell apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.domain import Request
from services.common.rule_files import CATALOG_FILE, PROJECT_PREFIX, ROUTING_FILE, RuleBook
from services.common.yaml_files import Problem
from services.router.rule_engine import RoutingEngine

_OTHER = "__其他取值__"
# items × requests × combinations of tested fact values; the repository's rules need 900
MAX_CASES = 100_000


@dataclass(frozen=True)
class CheckReport:
    version: str
    cases: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def fact_samples(book: RuleBook) -> dict[str, list[Any]]:
    """For each project fact the rules test, the values that tell every rule apart."""
    samples: dict[str, list[Any]] = {}
    for fact in book.project_facts_used():
        spec = book.project_facts[fact]
        tests = [t for rule in book.rules for name, t in {**rule.when, **(rule.unless or {})}.items()
                 if name == PROJECT_PREFIX + fact]
        if spec.type == "boolean":
            values: list[Any] = [True, False]
        elif spec.type == "number":
            points = sorted({float(v) for t in tests for v in t.values()})
            values = sorted({p + d for p in points for d in (-0.5, 0.0, 0.5)})
        else:
            listed = list(spec.values) if spec.values else sorted({str(v) for t in tests for v in t.values()})
            values = listed + ([] if spec.values else [_OTHER])
        samples[fact] = values
    return samples


def _combinations(samples: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    names = sorted(samples)
    for values in itertools.product(*(samples[n] for n in names)):
        yield dict(zip(names, values, strict=True))


def cases_to_try(book: RuleBook, samples: Mapping[str, list[Any]] | None = None) -> int:
    """How many cases the static check tries: every item, for both requests, under every
    combination of the values that tell the rules apart."""
    samples = fact_samples(book) if samples is None else samples
    return len(book.catalog) * len(Request) * math.prod(len(v) for v in samples.values())


def check_rules(book: RuleBook, engine: RoutingEngine | None = None) -> CheckReport:
    """Tries every catalog item against every case; a problem per gap and per overlap."""
    routing_file = str(book.directory / ROUTING_FILE)
    samples = fact_samples(book)
    planned = cases_to_try(book, samples)
    if planned > MAX_CASES:
        # every combination of the tested facts' values is tried: a rules file that tests many facts
        # with many values each must be refused before it is tried, not after hours of trying
        counts = "、".join(f"{name}（{len(values)} 种）" for name, values in samples.items())
        return CheckReport(version=book.version, cases=0, problems=(Problem(
            routing_file, book.fact_lines.get(max(samples, key=lambda n: len(samples[n]), default="")), None,
            f"规则检验的项目事实取值组合共 {planned:,} 种情形，超过上限 {MAX_CASES:,}，拒绝检查："
            f"{counts}；请减少规则所检验的项目事实或取值 / too many cases to check"),))
    engine = engine or RoutingEngine(book)
    problems: list[Problem] = []
    cases = 0
    for item_code in book.catalog:
        gaps: dict[str, list[dict[str, Any]]] = {}
        overlaps: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for request in Request:
            for project in _combinations(samples):
                cases += 1
                facts = engine.facts_for(item_code, request, project)
                matched = engine.matching_rules(facts)
                if not matched:
                    gaps.setdefault(request.value, []).append(project)
                elif len(matched) > 1:
                    overlaps.setdefault(tuple(matched), []).append({"request": request.value, **project})
        for request_value, projects in gaps.items():
            problems.append(Problem(str(book.directory / CATALOG_FILE), book.item_lines.get(item_code), f"事项 {item_code}",
                                    f"遗漏：诉求为 {request_value} 时没有任何规则适用"
                                    f"{_describe(projects)}"))
        for rules, cases_ in overlaps.items():
            problems.append(Problem(routing_file, book.rule_lines.get(rules[0]), f"规则 {' 与 '.join(rules)}",
                                    f"重叠：事项 {item_code} 同时适用这些规则{_describe(cases_)}，"
                                    "每个事项只能由一条规则决定"))
    return CheckReport(version=book.version, cases=cases, problems=tuple(problems))


def _describe(cases: list[dict[str, Any]]) -> str:
    shown = [{k: v for k, v in c.items()} for c in cases if c]
    if not shown:
        return ""
    examples = "；".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in shown[:3])
    more = f" 等 {len(shown)} 种情形" if len(shown) > 3 else ""
    return f"（例如 {examples}{more}）"
