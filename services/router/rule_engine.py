"""The durable-rules adapter: compiles a ``RuleBook`` into a JSON ruleset and decides items.

durable-rules 2.0.28 facts designed around (each reproduced in ``tests/unit/test_rule_engine.py``):

* A rule's action is only ever a name bound by ``get_action``; the rule files compile to the
  JSON ruleset form, so nothing in them can run code.
* An exception raised in an action is swallowed into the session state. Our action only records
  the rule id, and every result is checked for an ``exception`` key, which becomes
  ``RuleEngineError``; the poisoned session is abandoned for a fresh one.
* An event that no rule matches raises ``MessageNotHandledException``: that is a gap, reported as
  an unroutable item with the reason.
* An event is consumed by the first matching rule, so overlaps are invisible to ``post``; the
  static check asserts *facts* instead, which fire every matching rule.
* A ruleset name cannot be registered twice: every rules version gets its own names, and a
  compiled version is cached and reused if the same files come back.
* It is not thread-safe: callers use it from one thread (the event loop's).
* It has no operator ``$ne`` (silently accepted, never true): inequality is ``$neq``.

A rule that says ``not_required`` is compiled like any other (so the static check sees its cases
as covered, and its overlaps); deciding it gives ``Unroutable(reason_code="not_required")`` with
the rule's reason. A retired catalog code gives ``Unroutable(reason_code="retired_item")`` naming
its replacement.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from durable import engine as durable

from services.common.domain import (
    EVALUATOR_BY_MODE,
    CatalogItem,
    Decision,
    Request,
    Unroutable,
)
from services.common.rule_files import (
    OWNER_REF,
    PROJECT_PREFIX,
    REQUEST_FIELD,
    ROUTING_FILE,
    RoutingRule,
    RuleBook,
    Test,
    retired_message,
)
from services.common.yaml_files import Problem, RulesError


class RuleEngineError(RuntimeError):
    """The rule engine failed while deciding (never a silent pass)."""


def fact_key(field: str) -> str:
    """The flat key a rule field has inside the engine (``item.owner`` -> ``item__owner``)."""
    return field.replace(".", "__")


def engine_value(value: Any) -> Any:
    """A fact as durable-rules receives it. Its C parser reads no number in exponent notation, which
    is how JSON writes a float whose size is under 1e-4 (``1e-07``): such an event was refused ("Could
    not assert event, error code: 204") and the agreement failed until it was parked. Such a float
    goes in as 0.0 (no rule draws a line that fine); every other value goes in unchanged, and the
    decision record keeps the value as given. (The models bound numbers to ±1e15, so none reaches
    the notation from above.)"""
    if isinstance(value, float) and abs(value) < 1e-4:
        return 0.0
    return value


def _compare(op: str, key: str, value: Any) -> dict[str, Any]:
    if op == "eq":
        return {key: value}
    if op == "ne":
        return {"$neq": {key: value}}
    if op == "in":
        return {"$or": [{key: v} for v in value]}
    if op == "not_in":
        return {"$and": [{"$neq": {key: v}} for v in value]}
    return {f"${op}": {key: value}}


_NEGATED = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}


def _condition(rule: RoutingRule) -> dict[str, Any]:
    terms = [_compare(t.op, fact_key(f), t.value) for f, t in rule.when.items()]
    if rule.unless:
        # not (A and B) == (not A) or (not B). A negated comparison on a missing fact is false
        # in durable-rules, as is the plain one: a missing fact never satisfies a rule.
        negated = [_compare(_NEGATED[t.op], fact_key(f), t.value) for f, t in rule.unless.items()]
        terms.append(negated[0] if len(negated) == 1 else {"$or": negated})
    return terms[0] if len(terms) == 1 else {"$and": terms}


def compile_ruleset(book: RuleBook) -> dict[str, Any]:
    """The durable-rules JSON ruleset body of a rule book: one rule per routing rule."""
    return {rule.id: {"all": [{"m": _condition(rule)}], "run": rule.id} for rule in book.rules}


def _admits(test: Test, value: str) -> bool:
    values = test.values()
    return {"eq": value in values, "in": value in values, "ne": value not in values,
            "not_in": value not in values}.get(test.op, True)


def _item_tests_admit(conditions: Mapping[str, Test], item: CatalogItem) -> bool:
    return all(_admits(test, str(getattr(item, name.removeprefix("item."))))
               for name, test in conditions.items() if name.startswith("item."))


def relevant_fields(book: RuleBook, item: CatalogItem) -> tuple[str, ...]:
    """The fact fields that can change ``item``'s decision, in a stable order.

    Every item and request field any rule tests, plus the project facts tested by rules that can
    apply to this item (its ``when`` admits the item) and by ``unless`` clauses that can hold for
    it. A project fact outside these cannot change the outcome, so it is neither sent to the
    engine nor shown in the decision record, nor part of the cache key.
    """
    fields = {name for rule in book.rules for name in rule.fields() if not name.startswith(PROJECT_PREFIX)}
    for rule in book.rules:
        if not _item_tests_admit(rule.when, item):
            continue
        fields |= {name for name in rule.when if name.startswith(PROJECT_PREFIX)}
        if rule.unless and _item_tests_admit(rule.unless, item):
            fields |= {name for name in rule.unless if name.startswith(PROJECT_PREFIX)}
    return tuple(sorted(fields))


class _Host(durable.Host):  # type: ignore[misc]
    """Binds every action name to a recorder of which rule fired for which message."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[tuple[str, int]] = []

    def get_action(self, action_name: str) -> Any:
        fired = self.fired

        def record(c: Any) -> None:
            fired.append((action_name, c.m["id"]))

        return record


_HOST: _Host | None = None
_IDS = itertools.count(1)


def _host() -> _Host:
    global _HOST
    if _HOST is None:
        _HOST = _Host()
    return _HOST


class RoutingEngine:
    """Decides items under one rules version. Use from a single thread."""

    # rules version -> its registered ruleset names (durable-rules cannot register a name twice)
    _compiled: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, book: RuleBook, *, cache_size: int = 4096) -> None:
        self.book = book
        self.version = book.version
        self._fields = {code: relevant_fields(book, item) for code, item in book.catalog.items()}
        self._host = _host()
        self._route_name, self._check_name = self._register(book)
        self._sid = f"s{next(_IDS)}"
        self._cache: OrderedDict[tuple[Any, ...], str | None] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def _register(cls, book: RuleBook) -> tuple[str, str]:
        names = cls._compiled.get(book.version)
        if names is None:
            body = compile_ruleset(book)
            names = (f"zeroerrand_route_{book.version}", f"zeroerrand_check_{book.version}")
            # register_rulesets mutates its argument (it deletes "run"): hand it copies.
            try:
                _host().register_rulesets({names[0]: copy.deepcopy(body), names[1]: copy.deepcopy(body)})
            except Exception as exc:  # durable-rules' own limits (its tables are of fixed size)
                routing = str(book.directory / ROUTING_FILE)
                raise RulesError([Problem(routing, book.rule_lines.get(book.rules[-1].id) if book.rules else None, None,
                                          f"规则引擎无法建立这套规则（{len(book.rules)} 条规则，超出 durable-rules 的容量："
                                          f"{exc}）；请合并或减少规则与条件 / the rule engine cannot hold these rules")]) from exc
            cls._compiled[book.version] = names
        return names

    # -- facts -------------------------------------------------------------------------------

    def facts_for(self, item_code: str, request: Request, project_facts: Mapping[str, Any]) -> dict[str, Any]:
        """The facts the rules test, for one planned item: what the decision record shows."""
        item = self.book.catalog[item_code]
        facts: dict[str, Any] = {}
        for name in self._fields[item_code]:
            if name == REQUEST_FIELD:
                facts[name] = request.value
            elif name.startswith(PROJECT_PREFIX):
                fact = name.removeprefix(PROJECT_PREFIX)
                if fact in project_facts and project_facts[fact] is not None:
                    facts[name] = project_facts[fact]
            else:
                facts[name] = str(getattr(item, name.removeprefix("item.")))
        return facts

    # -- deciding ----------------------------------------------------------------------------

    def decide(self, item_code: str, request: Request, project_facts: Mapping[str, Any],
               *, now: datetime | None = None) -> Decision | Unroutable:
        """Routes one planned item, or says specifically why it cannot be routed."""
        now = now or datetime.now(UTC)
        retired = self.book.retired.get(item_code)
        if retired is not None and item_code not in self.book.catalog:
            return Unroutable(reason_code="retired_item", rules_version=self.version, decided_at=now,
                              facts={"item.code": item_code, REQUEST_FIELD: request.value},
                              reason=retired_message(retired, self.book.catalog))
        if item_code not in self.book.catalog:
            return Unroutable(reason_code="unknown_item", rules_version=self.version, decided_at=now,
                              facts={"item.code": item_code, REQUEST_FIELD: request.value},
                              reason=f"服务事项清单中没有编码为 {item_code} 的事项，无法分派，请核对审批策划")
        facts = self.facts_for(item_code, request, project_facts)
        wrong = self._wrongly_typed(facts)
        if wrong:
            return Unroutable(reason_code="invalid_fact", rules_version=self.version, decided_at=now, facts=facts,
                              reason=f"事项 {item_code} 的分派取决于项目事实 {'；'.join(wrong)}，请更正后重新提交")
        # only facts that can change this item's decision are in ``facts``: a good cache key
        key = (item_code, *(facts.get(f) for f in self._fields[item_code]))
        if key in self._cache:
            self._cache.move_to_end(key)
            rule_id = self._cache[key]
        else:
            rule_id = self._post(facts)
            self._cache[key] = rule_id
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if rule_id is None:
            return self._gap(item_code, facts, now)
        return self._decision(item_code, rule_id, facts, now)

    def _wrongly_typed(self, facts: Mapping[str, Any]) -> list[str]:
        """The project facts whose value is not of the type ``routing.yaml`` declares (a number, a
        yes/no, one of the declared values), each said with its label: a rule never compares them."""
        wrong = []
        for name, value in facts.items():
            spec = self.book.project_facts.get(name.removeprefix(PROJECT_PREFIX)) if name.startswith(
                PROJECT_PREFIX) else None
            if spec is None:
                continue
            fact = f"{name.removeprefix(PROJECT_PREFIX)}（{spec.label}）"
            if spec.type == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                wrong.append(f"{fact} 应为数值，协议给出的是 {value!r}")
            elif spec.type == "number" and spec.minimum is not None and value < spec.minimum:
                wrong.append(f"{fact} 不能小于 {spec.minimum:g}，协议给出的是 {value!r}")
            elif spec.type == "number" and spec.maximum is not None and value > spec.maximum:
                wrong.append(f"{fact} 不能大于 {spec.maximum:g}，协议给出的是 {value!r}")
            elif spec.type == "boolean" and not isinstance(value, bool):
                wrong.append(f"{fact} 应为 true 或 false，协议给出的是 {value!r}")
            elif spec.type == "string" and (not isinstance(value, str)
                                            or (spec.values is not None and value not in spec.values)):
                allowed = f"（可取 {'、'.join(spec.values)}）" if spec.values is not None else ""
                wrong.append(f"{fact} 应为文字{allowed}，协议给出的是 {value!r}")
        return wrong

    def _post(self, facts: dict[str, Any]) -> str | None:
        host = self._host
        ident = next(_IDS)
        message = {fact_key(k): engine_value(v) for k, v in facts.items()}
        message["id"] = ident
        message["sid"] = self._sid
        host.fired.clear()
        try:
            state = host.post(self._route_name, message)
        except durable.MessageNotHandledException:
            return None
        finally:
            # an `$or` can match one message once per branch: count rules, not firings
            fired = sorted({rule for rule, m in host.fired if m == ident})
            host.fired.clear()
        self._raise_on_exception(state)
        if len(fired) != 1:
            raise RuleEngineError(f"rule engine fired {len(fired)} actions for one item: {fired}")
        return fired[0]

    def _raise_on_exception(self, state: Any) -> None:
        if isinstance(state, Mapping) and "exception" in state:
            self._sid = f"s{next(_IDS)}"  # the old session keeps the exception: start afresh
            raise RuleEngineError(f"rule action failed inside durable-rules: {state['exception']}")

    def _decision(self, item_code: str, rule_id: str, facts: dict[str, Any], now: datetime) -> Decision | Unroutable:
        # here, not at the top: the bounded child that checks a candidate (services.router.candidate)
        # compiles and matches rules but never decides, and must not load the broker client with topology
        from services.common.topology import item_routing_key

        rule = self.book.rule(rule_id)
        item = self.book.catalog[item_code]
        outcome = rule.then
        if outcome is None:
            assert rule.not_required is not None  # a rule says exactly one of them (RoutingRule)
            return Unroutable(reason_code="not_required", reason=rule.not_required, rules_version=self.version,
                              facts=facts, decided_at=now)
        unit = item.owner if outcome.unit == OWNER_REF else outcome.unit
        evaluated_as = outcome.evaluation_mode
        return Decision(
            mode=outcome.mode,
            responsible_unit=unit,
            approving_authority=outcome.authority or item.owner,
            evaluated_as=evaluated_as,
            evaluator=EVALUATOR_BY_MODE[evaluated_as],
            routing_key=item_routing_key(outcome.mode, unit),
            rule_id=rule.id,
            rule_name=rule.name,
            rules_version=self.version,
            facts=facts,
            task_order=outcome.issues_task_order,
            decided_at=now,
        )

    def _gap(self, item_code: str, facts: dict[str, Any], now: datetime) -> Unroutable:
        missing = [f.removeprefix(PROJECT_PREFIX) for f in self._fields[item_code]
                   if f.startswith(PROJECT_PREFIX) and f not in facts]
        if missing:
            labels = "、".join(f"{name}（{self.book.project_facts[name].label}）" for name in missing)
            return Unroutable(reason_code="missing_fact", rules_version=self.version, decided_at=now, facts=facts,
                              reason=f"事项 {item_code} 的分派取决于项目事实 {labels}，但协议未提供，请补充后重新提交")
        return Unroutable(reason_code="no_rule", rules_version=self.version, decided_at=now, facts=facts,
                          reason=f"没有任何路由规则覆盖事项 {item_code}（事实：{facts}），请运维人员补充规则")

    # -- the static check's view -------------------------------------------------------------

    def matching_rules(self, facts: Mapping[str, Any]) -> list[str]:
        """Every rule whose conditions hold for ``facts`` (asserted as a fact, then retracted)."""
        host = self._host
        ident = next(_IDS)
        fact = {fact_key(k): engine_value(v) for k, v in facts.items()}
        fact["id"] = ident
        fact["sid"] = f"check{ident}"
        host.fired.clear()
        try:
            state = host.assert_fact(self._check_name, fact)
            self._raise_on_exception(state)
        except durable.MessageNotHandledException:
            return []
        finally:
            fired = sorted({rule for rule, m in host.fired if m == ident})
            host.fired.clear()
        host.delete_state(self._check_name, fact["sid"])
        return fired
