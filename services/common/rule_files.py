"""Operator-edited rule files: ``units.yaml``, ``catalog.yaml`` and ``routing.yaml``.

Reads them as located YAML (``services.common.yaml_files``: line numbers kept, validated with
Pydantic) and cross-checks the files against each other: owners and units, retired codes (never reused, replaced by a live item),
what each item requires (known, live, not itself, not of a later stage, no cycle) and the
routing rules' references. Every problem names the file, the line and the rule or item, in Chinese,
so an operator can fix it without reading code. Nothing in these files can execute code: they
are parsed as plain data (no YAML tags) and rule conditions are a closed vocabulary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.domain import (
    PREVIOUS_STAGE,
    CatalogItem,
    Jurisdiction,
    Name,
    Request,
    RetiredItem,
    ServiceMode,
    Stage,
    Text,
    Unit,
)
from services.common.yaml_files import Located, Problem, RulesError, parse_located, read_bounded, validate_located

_T = TypeVar("_T", bound=BaseModel)

UNITS_FILE = "units.yaml"
CATALOG_FILE = "catalog.yaml"
ROUTING_FILE = "routing.yaml"
RULE_FILES = (UNITS_FILE, CATALOG_FILE, ROUTING_FILE)


# ---------------------------------------------------------------------------------------------
# The routing-rule vocabulary

Scalar = str | int | float | bool

ITEM_FIELDS = ("item.code", "item.stage", "item.owner", "item.jurisdiction")
REQUEST_FIELD = "request"
PROJECT_PREFIX = "project."
OWNER_REF = "item.owner"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Test(_Strict):
    """One comparison on a fact. Written in YAML as a plain value (equality) or ``{op: value}``."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in", min_length=1)
    not_in: tuple[Scalar, ...] | None = Field(default=None, min_length=1)
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_value_means_equals(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return data
        if isinstance(data, list):
            return {"in": data}
        return {"eq": data}

    @model_validator(mode="after")
    def _exactly_one_operator(self) -> Test:
        if len(self.operators()) != 1:
            raise ValueError("每个条件只能写一个比较运算（eq/ne/in/not_in/gt/gte/lt/lte 之一）")
        return self

    def operators(self) -> list[tuple[str, Any]]:
        return [(op, value) for op, value in self.model_dump(by_alias=True).items() if value is not None]

    @property
    def op(self) -> str:
        return self.operators()[0][0]

    @property
    def value(self) -> Any:
        return self.operators()[0][1]

    def values(self) -> tuple[Any, ...]:
        value = self.value
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)


class FactSpec(_Strict):
    """A project fact that rules may test, declared so agreements and checks know its type."""

    label: str = Field(min_length=1)
    type: Literal["number", "boolean", "string"]
    values: tuple[str, ...] | None = None
    minimum: float | None = Field(default=None, description="number facts: the smallest value that can be true")
    maximum: float | None = Field(default=None, description="number facts: the largest value that can be true")

    def parse(self, name: str, text: str) -> Any:
        """A value typed in (``rules explain --fact``, the console's explain form) as this fact's type;
        ``ValueError`` (Chinese) when it is not one."""
        if self.type == "number":
            try:
                return float(text) if any(c in text for c in ".eE") else int(text)
            except ValueError:
                raise ValueError(f"项目事实 {name}（{self.label}）是数值，{text!r} 不是数字") from None
        if self.type == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"项目事实 {name}（{self.label}）只能是 true 或 false")
            return text.lower() == "true"
        return text


class Outcome(_Strict):
    """What a rule decides: the service mode and the unit responsible for the item."""

    mode: ServiceMode
    unit: str = Field(min_length=1, description="a unit code, or `item.owner` for the approving department")
    authority: str | None = Field(default=None, description="overrides the approving authority")
    evaluated_as: ServiceMode | None = None
    task_order: bool | None = None

    @model_validator(mode="after")
    def _consult_names_its_evaluation(self) -> Outcome:
        if self.mode is ServiceMode.CONSULT:
            if self.evaluated_as in (None, ServiceMode.CONSULT):
                raise ValueError("咨询服务规则必须写 evaluated_as（assist/joint/errand），按原服务方式评价")
        elif self.evaluated_as not in (None, self.mode):
            raise ValueError("只有咨询服务规则可以写不同于 mode 的 evaluated_as")
        return self

    @property
    def evaluation_mode(self) -> ServiceMode:
        return self.evaluated_as or self.mode

    @property
    def issues_task_order(self) -> bool:
        if self.task_order is not None:
            return self.task_order
        return self.evaluation_mode is ServiceMode.ERRAND


class RoutingRule(_Strict):
    """``when`` all conditions hold, and not all of ``unless`` hold, ``then`` decides.

    Instead of ``then`` a rule may say ``not_required``: the item is not needed in these cases
    (the text, in Chinese, says why); deciding it parks the item with that reason.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_.\-]*$", max_length=64)
    name: Name
    policy: Text | None = None
    when: dict[str, Test] = Field(min_length=1)
    unless: dict[str, Test] | None = None
    then: Outcome | None = None
    not_required: Text | None = Field(default=None, description="why the item is not needed")

    @model_validator(mode="after")
    def _then_or_not_required(self) -> RoutingRule:
        if (self.then is None) == (self.not_required is None):
            raise ValueError("每条规则必须且只能写 then（分派结果）或 not_required（无需办理的理由）二者之一")
        return self

    @field_validator("when", "unless")
    @classmethod
    def _known_fields(cls, conditions: dict[str, Test] | None) -> dict[str, Test] | None:
        for name in conditions or {}:
            if name != REQUEST_FIELD and name not in ITEM_FIELDS and not name.startswith(PROJECT_PREFIX):
                known = "、".join((REQUEST_FIELD, *ITEM_FIELDS, "project.<事实名>"))
                raise ValueError(f"未知的条件字段 {name!r}，只能是 {known}")
        return conditions

    def fields(self) -> set[str]:
        return set(self.when) | set(self.unless or {})


class RoutingFile(_Strict):
    project_facts: dict[str, FactSpec] = Field(default_factory=dict)
    rules: tuple[RoutingRule, ...] = Field(min_length=1)


class UnitsFile(_Strict):
    units: tuple[Unit, ...] = Field(min_length=1)


class CatalogFile(_Strict):
    items: tuple[CatalogItem, ...] = Field(min_length=1)
    retired: tuple[RetiredItem, ...] = ()


# ---------------------------------------------------------------------------------------------
# Reading the three files (the located-YAML loader itself is services.common.yaml_files)

_COLLECTIONS = {UNITS_FILE: ("units", "单位"), CATALOG_FILE: ("items", "事项"), ROUTING_FILE: ("rules", "规则")}
_MORE_COLLECTIONS = {CATALOG_FILE: {"retired": "停用事项"}}

# durable-rules holds a rules version in tables of fixed size: about 260 rules of three conditions
# fill them (the repository's rules are 11); beyond this many, the file is refused with its line
MAX_RULES = 200


def read_rule_files(directory: str | Path) -> dict[str, bytes]:
    """The bytes of the three rule files, read once (each bounded in size); ``RulesError`` listing
    every file that cannot be read."""
    directory = Path(directory)
    problems: list[Problem] = []
    contents: dict[str, bytes] = {}
    for name in RULE_FILES:
        try:
            contents[name] = read_bounded(directory / name)
        except RulesError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RulesError(problems)
    return contents


# ---------------------------------------------------------------------------------------------
# The rule book


@dataclass(frozen=True)
class RuleBook:
    """Validated units, catalog and routing rules, with the version they are known by."""

    directory: Path
    version: str
    units: Mapping[str, Unit]
    catalog: Mapping[str, CatalogItem]
    project_facts: Mapping[str, FactSpec]
    rules: tuple[RoutingRule, ...]
    rule_lines: Mapping[str, int | None] = field(default_factory=dict)
    retired: Mapping[str, RetiredItem] = field(default_factory=dict)
    item_lines: Mapping[str, int | None] = field(default_factory=dict)
    fact_lines: Mapping[str, int | None] = field(default_factory=dict)

    def rule(self, rule_id: str) -> RoutingRule:
        return self._rules_by_id[rule_id]

    @cached_property
    def _rules_by_id(self) -> dict[str, RoutingRule]:
        return {rule.id: rule for rule in self.rules}

    def item_facts_used(self) -> tuple[str, ...]:
        """Every fact field some rule tests, in a stable order."""
        return tuple(sorted({name for rule in self.rules for name in rule.fields()}))

    def project_facts_used(self) -> tuple[str, ...]:
        return tuple(f.removeprefix(PROJECT_PREFIX) for f in self.item_facts_used() if f.startswith(PROJECT_PREFIX))


def rules_version(contents: Iterable[tuple[str, bytes]]) -> str:
    """A content hash of the rule files: same files, same version, on every machine."""
    digest = hashlib.sha256()
    for name, raw in sorted(contents):
        digest.update(name.encode() + b"\0" + raw + b"\0")
    return digest.hexdigest()[:12]


def load_rulebook(directory: str | Path, contents: Mapping[str, bytes] | None = None,
                  reading: Callable[[str], None] | None = None) -> RuleBook:
    """Loads and validates the three rule files, or raises ``RulesError`` listing every problem.

    ``contents``: the files' bytes already read from ``directory`` (``read_rule_files``), so what is
    loaded is exactly what was checked; errors still name the files in ``directory``. ``reading``
    is told the path of each file before it is parsed (so a check cut short can say where)."""
    directory = Path(directory)
    raws = dict(contents) if contents is not None else read_rule_files(directory)
    problems: list[Problem] = []
    sources: dict[str, Located] = {}
    for name in RULE_FILES:
        if reading is not None:
            reading(str(directory / name))
        try:
            sources[name] = parse_located(str(directory / name), raws[name])
        except RulesError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RulesError(problems)

    parsed: dict[str, BaseModel] = {}
    for name, model in ((UNITS_FILE, UnitsFile), (CATALOG_FILE, CatalogFile), (ROUTING_FILE, RoutingFile)):
        try:
            parsed[name] = validate_located(sources[name], model, *_COLLECTIONS[name], _MORE_COLLECTIONS.get(name))
        except RulesError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RulesError(problems)

    units_file = parsed[UNITS_FILE]
    catalog_file = parsed[CATALOG_FILE]
    routing = parsed[ROUTING_FILE]
    assert isinstance(units_file, UnitsFile) and isinstance(catalog_file, CatalogFile)
    assert isinstance(routing, RoutingFile)

    units = _unique(units_file.units, "code", sources[UNITS_FILE], "units", "单位", problems)
    catalog = _unique(catalog_file.items, "code", sources[CATALOG_FILE], "items", "事项", problems)
    retired = _unique(catalog_file.retired, "code", sources[CATALOG_FILE], "retired", "停用事项", problems)
    _unique(routing.rules, "id", sources[ROUTING_FILE], "rules", "规则", problems)
    if len(routing.rules) > MAX_RULES:
        problems.append(Problem(sources[ROUTING_FILE].file, sources[ROUTING_FILE].line(["rules", MAX_RULES]),
                                f"规则 第{MAX_RULES + 1}条", f"共 {len(routing.rules)} 条规则，超过上限 {MAX_RULES} 条"
                                "（规则引擎的容量有限），请合并规则（条件可写列表 in: [...]）/ too many rules"))

    units_src = sources[UNITS_FILE]
    for index, unit in enumerate(units_file.units):
        if unit.recruits and unit.jurisdiction is not Jurisdiction.DISTRICT:
            problems.append(Problem(units_src.file, units_src.line(["units", index, "recruits"]), f"单位 {unit.code}",
                                    f"recruits: 项目招引单位是新区的单位（方案三(二)“新区项目招引单位”），{unit.code} 的管辖是 "
                                    f"{unit.jurisdiction.value}，不能设为 true"))

    catalog_src = sources[CATALOG_FILE]
    for index, item in enumerate(catalog_file.items):
        owner = units.get(item.owner)
        subject = f"事项 {item.code}"
        if owner is None:
            problems.append(Problem(catalog_src.file, catalog_src.line(["items", index, "owner"]), subject,
                                    f"owner: 单位 {item.owner!r} 不在 {UNITS_FILE} 中"))
        elif owner.jurisdiction is not item.jurisdiction:
            problems.append(Problem(catalog_src.file, catalog_src.line(["items", index, "jurisdiction"]), subject,
                                    f"jurisdiction: 写的是 {item.jurisdiction.value}，但审批单位 {owner.code} "
                                    f"的管辖是 {owner.jurisdiction.value}"))

    problems.extend(_check_retired(catalog_file, catalog_src))
    problems.extend(_check_requires(catalog_file, catalog_src, retired))

    routing_src = sources[ROUTING_FILE]
    for index, rule in enumerate(routing.rules):
        problems.extend(_check_rule(rule, index, routing_src, units, catalog, routing.project_facts, retired))

    if problems:
        raise RulesError(problems)
    return RuleBook(
        directory=directory,
        version=rules_version(raws.items()),
        units=units,
        catalog=catalog,
        project_facts=dict(routing.project_facts),
        rules=routing.rules,
        rule_lines={rule.id: routing_src.line(["rules", i]) for i, rule in enumerate(routing.rules)},
        retired=retired,
        item_lines={item.code: catalog_src.line(["items", i]) for i, item in enumerate(catalog_file.items)},
        fact_lines={name: routing_src.line(["project_facts", name]) for name in routing.project_facts},
    )


def _unique(entries: Sequence[_T], key: str, source: Located, collection: str, label: str,
                          problems: list[Problem]) -> dict[str, _T]:
    seen: dict[str, _T] = {}
    for index, entry in enumerate(entries):
        ident = getattr(entry, key)
        if ident in seen:
            problems.append(Problem(source.file, source.line([collection, index, key]), f"{label} {ident}",
                                    f"{key}: {ident!r} 重复（编码必须唯一）"))
        else:
            seen[ident] = entry
    return seen


def retired_message(retired: RetiredItem, catalog: Mapping[str, CatalogItem]) -> str:
    """``事项 EP-04（人防工程设计审查）已停用：…；请改为 EP-03（施工图联合审查）``."""
    replacement = catalog.get(retired.replaced_by) if retired.replaced_by else None
    instead = f"；请改为 {replacement.code}（{replacement.name}）" if replacement else ""
    return f"事项 {retired.code}（{retired.name}）已停用：{retired.reason.rstrip('。；;.')}{instead}"


def _check_retired(catalog_file: CatalogFile, source: Located) -> list[Problem]:
    """A retired code is never used again, and points to a live item when it names a replacement."""
    problems: list[Problem] = []
    live = {item.code for item in catalog_file.items}
    retired_codes = {entry.code for entry in catalog_file.retired}
    for index, entry in enumerate(catalog_file.retired):
        subject = f"停用事项 {entry.code}"
        if entry.code in live:
            problems.append(Problem(source.file, source.line(["retired", index, "code"]), subject,
                                    f"code: {entry.code} 已停用，但 items 中仍有事项使用该编码（停用的编码不得复用）"))
        if entry.replaced_by is None:
            continue
        line = source.line(["retired", index, "replaced_by"])
        if entry.replaced_by == entry.code:
            problems.append(Problem(source.file, line, subject, "replaced_by: 不能由自己替代"))
        elif entry.replaced_by in live:
            continue
        elif entry.replaced_by in retired_codes:
            problems.append(Problem(source.file, line, subject,
                                    f"replaced_by: {entry.replaced_by} 也已停用，请改为现行事项编码"))
        else:
            problems.append(Problem(source.file, line, subject,
                                    f"replaced_by: 事项 {entry.replaced_by!r} 不在服务事项清单（items）中"))
    return problems


_STAGE_ORDER = {stage: position for position, stage in enumerate(Stage)}


def _check_requires(catalog_file: CatalogFile, source: Located, retired: Mapping[str, RetiredItem]) -> list[Problem]:
    """What an item requires exists, is live, is not itself, is of its stage or earlier, and has no cycle."""
    problems: list[Problem] = []
    items = {item.code: item for item in catalog_file.items}
    first_stage = next(iter(Stage))
    edges: dict[str, list[str]] = {}
    for index, item in enumerate(catalog_file.items):
        subject = f"事项 {item.code}"
        if item.requires == PREVIOUS_STAGE:
            if item.stage is first_stage:
                problems.append(Problem(source.file, source.line(["items", index, "requires"]), subject,
                                        f"requires: {item.stage.value} 是第一个审批阶段，没有上一阶段，"
                                        f"不能写 {PREVIOUS_STAGE}"))
            continue
        for position, code in enumerate(item.requires):
            line = source.line(["items", index, "requires", position])
            if code == item.code:
                problems.append(Problem(source.file, line, subject, "requires: 事项不能依赖自己"))
            elif code not in items and code in retired:
                problems.append(Problem(source.file, line, subject,
                                        f"requires: {retired_message(retired[code], items)}"))
            elif code not in items:
                problems.append(Problem(source.file, line, subject,
                                        f"requires: 事项 {code!r} 不在服务事项清单（items）中"))
            elif _STAGE_ORDER[items[code].stage] > _STAGE_ORDER[item.stage]:
                problems.append(Problem(source.file, line, subject,
                                        f"requires: {code} 属于后面的阶段 {items[code].stage.value}，"
                                        f"不能作为 {item.stage.value} 阶段事项的前置"))
            else:
                edges.setdefault(item.code, []).append(code)
    lines = {item.code: source.line(["items", index, "requires"]) for index, item in enumerate(catalog_file.items)}
    for cycle in _cycles(edges):
        problems.append(Problem(source.file, lines.get(cycle[0]), f"事项 {cycle[0]}",
                                f"requires: 循环依赖 {' → '.join((*cycle, cycle[0]))}，事项之间的前置关系不能成环"))
    return problems


def _cycles(edges: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    """Cycles of the requires graph, each once and starting at its smallest code.

    A depth-first search: at least one cycle through every group of items that wait on each other.
    """
    found: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(code: str, path: list[str]) -> None:
        if code in path:
            cycle = path[path.index(code):]
            start = cycle.index(min(cycle))
            found.add(tuple(cycle[start:] + cycle[:start]))
            return
        if code in done:
            return
        path.append(code)
        for target in edges.get(code, ()):
            visit(target, path)
        path.pop()
        done.add(code)

    for code in sorted(edges):
        visit(code, [])
    return sorted(found)


def _check_rule(rule: RoutingRule, index: int, source: Located, units: Mapping[str, Unit],
                catalog: Mapping[str, CatalogItem], facts: Mapping[str, FactSpec],
                retired: Mapping[str, RetiredItem]) -> list[Problem]:
    subject = f"规则 {rule.id}"
    problems: list[Problem] = []

    def problem(path: Sequence[int | str], message: str) -> None:
        problems.append(Problem(source.file, source.line(["rules", index, *path]), subject, message))

    if rule.then is not None:
        if rule.then.unit != OWNER_REF and rule.then.unit not in units:
            problem(["then", "unit"], f"then.unit: 单位 {rule.then.unit!r} 不在 {UNITS_FILE} 中")
        if rule.then.authority is not None and rule.then.authority not in units:
            problem(["then", "authority"], f"then.authority: 单位 {rule.then.authority!r} 不在 {UNITS_FILE} 中")

    allowed: dict[str, tuple[Iterable[Any], str]] = {
        "item.code": (catalog, CATALOG_FILE),
        "item.owner": (units, UNITS_FILE),
        "item.stage": ([s.value for s in Stage], "阶段列表"),
        "item.jurisdiction": ([j.value for j in Jurisdiction], "管辖列表"),
        REQUEST_FIELD: ([r.value for r in Request], "handle/consult"),
    }
    for part in ("when", "unless"):
        for name, test in (getattr(rule, part) or {}).items():
            if name.startswith(PROJECT_PREFIX):
                fact = name.removeprefix(PROJECT_PREFIX)
                spec = facts.get(fact)
                if spec is None:
                    problem([part, name], f"{part}.{name}: 项目事实 {fact!r} 未在 project_facts 中声明")
                    continue
                problems.extend(_check_fact_test(spec, test, lambda m, p=part, n=name: problem([p, n], f"{p}.{n}: {m}")))
                continue
            if test.op in ("gt", "gte", "lt", "lte"):
                problem([part, name], f"{part}.{name}: 该字段不是数值，不能用 {test.op}")
                continue
            known, where = allowed[name]
            known_set = set(known)
            for value in test.values():
                if name == "item.code" and value not in known_set and value in retired:
                    problem([part, name], f"{part}.{name}: {retired_message(retired[value], catalog)}")
                elif value not in known_set:
                    problem([part, name], f"{part}.{name}: {value!r} 不在{where}中")
    return problems


def _check_fact_test(spec: FactSpec, test: Test, report: Any) -> list[Problem]:
    numeric = test.op in ("gt", "gte", "lt", "lte")
    if spec.type == "number":
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in test.values()):
            report(f"项目事实是数值，条件值必须是数字：{test.value!r}")
    elif numeric:
        report(f"项目事实类型是 {spec.type}，不能用 {test.op}")
    elif spec.type == "boolean":
        if not all(isinstance(v, bool) for v in test.values()):
            report(f"项目事实是 true/false，条件值必须是 true 或 false：{test.value!r}")
    elif spec.values is not None:
        for value in test.values():
            if value not in spec.values:
                report(f"{value!r} 不在该事实声明的取值 {list(spec.values)} 中")
    return []


JURISDICTION_NAMES_ZH = {"district": "新区部门", "dispatched": "派驻机构", "outside": "新区以外的机关"}
REQUEST_NAMES_ZH = {"handle": "办理", "consult": "仅咨询"}


def facts_in_words(facts: Mapping[str, Any], project_facts: Mapping[str, FactSpec],
                   catalog: Mapping[str, CatalogItem], unit_name: Callable[[str], str]) -> list[str]:
    """The facts a decision tested, as staff read them: each by its Chinese name (the label of
    ``routing.yaml``'s ``project_facts``), units by name, yes/no as 是/否; never a code or a dict."""
    words = []
    for key, value in facts.items():
        shown = "是" if value is True else "否" if value is False else value
        if key == "item.code":
            words.append(f"事项：{value} {catalog[value].name if value in catalog else '（清单中无此事项）'}")
        elif key == "item.owner":
            words.append(f"审批机关：{unit_name(str(value))}")
        elif key == "item.jurisdiction":
            words.append(f"审批机关所在：{JURISDICTION_NAMES_ZH.get(str(value), value)}")
        elif key == "request":
            words.append(f"企业诉求：{REQUEST_NAMES_ZH.get(str(value), value)}")
        elif key.startswith("project.") and key.removeprefix("project.") in project_facts:
            words.append(f"{project_facts[key.removeprefix('project.')].label}：{shown}")
        else:
            words.append(f"{key}：{shown}")
    return words
