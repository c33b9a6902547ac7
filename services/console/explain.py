"""The rules page's "explain" form: one item's decision under the active rule files, as
``zeroerrand rules explain --item`` prints it. The files are checked in the router's bounded
child process first, and the engine is kept while their version stays the same."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from services.common.domain import MODE_NAMES_ZH, Request, Unroutable
from services.common.messages import FactValue
from services.common.rule_files import FactSpec, facts_in_words, read_rule_files, rules_version
from services.common.settings import RouterSettings
from services.common.yaml_files import RulesError
from services.router.rule_engine import RoutingEngine

__all__ = ["explain", "facts_from_form", "facts_in_words", "parse_facts"]
_engines: dict[str, RoutingEngine] = {}
_FACT = TypeAdapter(FactValue)
_lock = asyncio.Lock()


async def _engine(directory: Path) -> RoutingEngine:
    from services.router.active_rules import load_checked
    from services.router.candidate import check_candidate

    contents = read_rule_files(directory)
    version = rules_version(contents.items())
    async with _lock:
        if version in _engines:
            return _engines[version]
        settings = RouterSettings()
        problems = await check_candidate(directory, contents, timeout_s=settings.check_timeout_s,
                                         memory_bytes=settings.check_memory_mb * 2**20)
        if problems:
            raise RulesError(problems)
        _engines.clear()
        _engines[version] = load_checked(directory)
        return _engines[version]


def parse_facts(engine: RoutingEngine, text: str) -> dict[str, Any]:
    """``名称=值`` pairs separated by spaces, commas or new lines, typed by the rule files' fact specs."""
    facts: dict[str, Any] = {}
    for pair in text.replace(",", " ").replace("，", " ").split():
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"项目事实需写成 名称=值，而不是 {pair!r}")
        spec = engine.book.project_facts.get(name)
        if spec is None:
            raise ValueError(f"规则中没有项目事实 {name!r}，可用：{'、'.join(engine.book.project_facts)}")
        facts[name] = spec.parse(name, value)
        try:  # the bounds every agreement's facts are held to (finite, ±1e15, one line of 200)
            _FACT.validate_python(facts[name])
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"项目事实 {name}（{spec.label}）：{reason}") from None
    return facts


async def explain(directory: Path, item: str, facts_text: str, consult: bool) -> dict[str, Any]:
    """The decision as a dict (``error`` instead when the files or the facts are wrong)."""
    try:
        engine = await _engine(directory)
    except RulesError as exc:
        return {"error": "规则文件有错误：" + "；".join(str(p) for p in exc.problems[:5])}
    try:
        facts = parse_facts(engine, facts_text)
    except ValueError as exc:
        return {"error": str(exc)}
    if len(item) > 64:
        return {"error": "事项编码过长"}
    decision = engine.decide(item, Request.CONSULT if consult else Request.HANDLE, facts)
    if isinstance(decision, Unroutable):
        return {"routable": False, "version": engine.book.version, **decision.model_dump(mode="json")}
    return {"routable": True, "version": engine.book.version, "mode_name": MODE_NAMES_ZH[decision.mode],
            **decision.model_dump(mode="json")}


def facts_from_form(form: Mapping[str, str], project_facts: Mapping[str, FactSpec]) -> str:
    """The explain form's facts (one input per declared fact, named ``fact_<name>`` and labelled in
    Chinese) as the ``名称=值`` text :func:`parse_facts` reads; blank inputs are left out."""
    pairs = [f"{name}={str(form.get(f'fact_{name}', '')).strip()}" for name in project_facts
             if str(form.get(f"fact_{name}", "")).strip()]
    return " ".join(pairs)
