"""Operator-edited rule files: ``units.yaml``, ``catalog.yaml`` and ``routing.yaml``.

Loads the YAML keeping line numbers, validates it with Pydantic and cross-checks the files
against each other. Every problem names the file, the line and the rule or item, in Chinese,
so an operator can fix it without reading code. Nothing in these files can execute code: they
are parsed as plain data (no YAML tags) and rule conditions are a closed vocabulary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError

from services.common.domain import (
    CatalogItem,
    Jurisdiction,
    Request,
    ServiceMode,
    Stage,
    Unit,
)

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T", bound=BaseModel)

UNITS_FILE = "units.yaml"
CATALOG_FILE = "catalog.yaml"
ROUTING_FILE = "routing.yaml"
RULE_FILES = (UNITS_FILE, CATALOG_FILE, ROUTING_FILE)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a rule file, located for the operator."""

    file: str
    line: int | None
    subject: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        subject = f" [{self.subject}]" if self.subject else ""
        return f"{where}{subject} {self.message}"


class RulesError(Exception):
    """The rule files cannot be used; ``problems`` says every reason found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


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
    """``when`` all conditions hold, and not all of ``unless`` hold, ``then`` decides."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_.\-]*$")
    name: str = Field(min_length=1)
    policy: str | None = None
    when: dict[str, Test] = Field(min_length=1)
    unless: dict[str, Test] | None = None
    then: Outcome

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


# ---------------------------------------------------------------------------------------------
# Loading with line numbers


@dataclass(frozen=True)
class _Source:
    file: str
    data: Any

    def line(self, path: Sequence[int | str]) -> int | None:
        """The 1-based line of the deepest node of ``path`` that exists in the YAML."""
        node, line = self.data, None
        for key in path:
            if isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line = node.lc.item(key)[0] + 1
                node = node[key]
            else:
                break
        if line is None and isinstance(node, (CommentedMap, CommentedSeq)):
            line = node.lc.line + 1
        return line

    def subject(self, path: Sequence[int | str], collection: str, label: str) -> str | None:
        """Names the rule or item a path points into, e.g. ``规则 joint.district``."""
        if len(path) >= 2 and path[0] == collection and isinstance(path[1], int):
            entries = self.data.get(collection) if isinstance(self.data, Mapping) else None
            if isinstance(entries, list) and path[1] < len(entries) and isinstance(entries[path[1]], Mapping):
                ident = entries[path[1]].get("id") or entries[path[1]].get("code")
                return f"{label} {ident}" if ident else f"{label} 第{path[1] + 1}条"
        return None


_COLLECTIONS = {UNITS_FILE: ("units", "单位"), CATALOG_FILE: ("items", "事项"), ROUTING_FILE: ("rules", "规则")}


class _DatesAsText(RoundTripConstructor):
    """Leaves dates as text for Pydantic to parse, so a bad date is reported with its line."""


_DatesAsText.add_constructor("tag:yaml.org,2002:timestamp", _DatesAsText.construct_yaml_str)


def read_located(path: Path) -> tuple[_Source, bytes]:
    """Reads a YAML (or JSON) data file keeping line numbers; ``RulesError`` if it cannot."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RulesError([Problem(shown, None, None, "文件不存在")]) from None
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _DatesAsText
    try:
        data = yaml.load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RulesError([Problem(shown, None, None, f"不是 UTF-8 编码：{exc}")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RulesError([Problem(shown, line, None, f"YAML 语法错误：{exc.problem or exc.context}")]) from None
    if not isinstance(data, CommentedMap):
        raise RulesError([Problem(shown, 1, None, "文件顶层必须是一个映射（键: 值）")])
    return _Source(shown, data), raw


def validate_located(source: _Source, model: type[_M], collection: str, label: str) -> _M:
    """Validates a located document; each error names the file, the line and the entry."""
    try:
        return model.model_validate(_plain(source.data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p)]
            where = _display_path(path)
            problems.append(
                Problem(source.file, source.line(path), source.subject(path, collection, label),
                        f"{where}: {_message_zh(error)}")
            )
        raise RulesError(problems) from None


def _display_path(path: Sequence[int | str]) -> str:
    """``rules.1.then.mode`` as an operator counts: ``rules[2].then.mode`` (entries from 1)."""
    shown = ""
    for part in path:
        shown += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if shown else str(part))
    return shown


def _message_zh(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    given = error.get("input")
    if kind == "missing":
        return "缺少必填字段"
    if kind == "extra_forbidden":
        return "不认识的字段（拼写错误？）"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        return f"取值 {given!r} 不在允许范围内，应为 {expected}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", msg))
    return f"{msg}（实际值 {given!r}）"


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


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


def load_rulebook(directory: str | Path) -> RuleBook:
    """Loads and validates the three rule files, or raises ``RulesError`` listing every problem."""
    directory = Path(directory)
    problems: list[Problem] = []
    sources: dict[str, _Source] = {}
    raws: dict[str, bytes] = {}
    for name in RULE_FILES:
        try:
            sources[name], raws[name] = read_located(directory / name)
        except RulesError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RulesError(problems)

    parsed: dict[str, BaseModel] = {}
    for name, model in ((UNITS_FILE, UnitsFile), (CATALOG_FILE, CatalogFile), (ROUTING_FILE, RoutingFile)):
        try:
            parsed[name] = validate_located(sources[name], model, *_COLLECTIONS[name])
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
    _unique(routing.rules, "id", sources[ROUTING_FILE], "rules", "规则", problems)

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

    routing_src = sources[ROUTING_FILE]
    for index, rule in enumerate(routing.rules):
        problems.extend(_check_rule(rule, index, routing_src, units, catalog, routing.project_facts))

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
    )


def _unique(entries: Sequence[_T], key: str, source: _Source, collection: str, label: str,
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


def _check_rule(rule: RoutingRule, index: int, source: _Source, units: Mapping[str, Unit],
                catalog: Mapping[str, CatalogItem], facts: Mapping[str, FactSpec]) -> list[Problem]:
    subject = f"规则 {rule.id}"
    problems: list[Problem] = []

    def problem(path: Sequence[int | str], message: str) -> None:
        problems.append(Problem(source.file, source.line(["rules", index, *path]), subject, message))

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
                if value not in known_set:
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
