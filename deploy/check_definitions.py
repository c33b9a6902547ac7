"""Checks deploy/rabbitmq/definitions.json against services/common/topology.py.

RabbitMQ refuses to redeclare a queue or exchange with different arguments (PRECONDITION_FAILED),
and every service declares the whole topology at start, so the definitions the cluster imports at
boot must say exactly what the code declares: the same exchanges, queues (type, durability,
arguments, value types included), dead-letter queues and bindings (to queues and to exchanges),
in vhost ``zeroerrand``,
and no users (users and their passwords are created separately, see deploy/README.md).

Usage, from the repository root:
    .venv/bin/python deploy/check_definitions.py            # check; exit 1 on any difference
    .venv/bin/python deploy/check_definitions.py --write    # regenerate the file from the code
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY.parent))

from services.common import permissions, topology  # noqa: E402

DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"
USERS = DEPLOY / "rabbitmq" / "users.sh"
UNITS = DEPLOY.parent / "rules" / "units.yaml"
USER_PREFIX = "zeroerrand-"
VHOST = "zeroerrand"
VHOST_DESCRIPTION = "企业零跑腿 zero-errand: agreements, routed items, events, dead letters"


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))


def _exchange(exchange: Any) -> dict[str, Any]:
    return {
        "name": exchange.name,
        "vhost": VHOST,
        "type": _value(exchange.type),
        "durable": bool(exchange.durable),
        "auto_delete": bool(exchange.auto_delete),
        "internal": bool(getattr(exchange, "internal", False) or False),
        "arguments": dict(exchange.arguments or {}),
    }


def _queue(queue: Any) -> dict[str, Any]:
    if queue.exclusive:
        raise SystemExit(f"queue {queue.name} is exclusive in the code: it cannot be in a definitions file")
    return {
        "name": queue.name,
        "vhost": VHOST,
        "durable": bool(queue.durable),
        "auto_delete": bool(queue.auto_delete),
        "arguments": dict(queue.arguments or {}),
    }


def _binding(source: str, destination: str, routing_key: str, destination_type: str = "queue") -> dict[str, Any]:
    return {
        "source": source,
        "vhost": VHOST,
        "destination": destination,
        "destination_type": destination_type,
        "routing_key": routing_key,
        "arguments": {},
    }


def expected() -> dict[str, Any]:
    """What ``declare_topology`` declares, in the RabbitMQ definitions format."""
    exchanges = [_exchange(x) for x in topology.EXCHANGES]
    queues = [_queue(q) for _, q in topology.BINDINGS]
    bindings = [_binding(x.name, q.name, q.routing()) for x, q in topology.BINDINGS]
    bindings += [_binding(source.name, destination.name, key, "exchange")
                 for source, destination, key in topology.EXCHANGE_BINDINGS]
    for queue in topology.CONSUMER_QUEUES:
        dead = topology.dead_letter_queue(queue)
        queues.append(_queue(dead))
        bindings.append(_binding(topology.DEAD.name, dead.name, queue.name))
    return {
        "vhosts": [{
            "name": VHOST,
            "description": VHOST_DESCRIPTION,
            "tags": [],
            "default_queue_type": "quorum",
            "metadata": {"description": VHOST_DESCRIPTION, "tags": [], "default_queue_type": "quorum"},
        }],
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    }


def _canonical(item: Any) -> str:
    # JSON text, keys sorted: 5, 5.0, "5" and true stay distinct (RabbitMQ compares value types too).
    return json.dumps(item, sort_keys=True, ensure_ascii=False)


def _keyed(items: list[dict[str, Any]], key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(item.get(k) for k in key): item for item in items}


def compare(actual: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if actual.get("users"):
        problems.append("definitions declare users: create users separately (passwords stay out of the repository)")
    if actual.get("permissions"):
        problems.append("definitions declare permissions: they belong with the users, created separately")
    unknown = set(actual) - {"rabbit_version", "rabbitmq_version", "vhosts", "exchanges", "queues", "bindings",
                             "users", "permissions", "policies", "parameters", "global_parameters",
                             "topic_permissions"}
    if unknown:
        problems.append(f"unknown top-level keys: {sorted(unknown)}")
    vhosts = {v.get("name") for v in actual.get("vhosts", [])}
    if vhosts != {VHOST}:
        problems.append(f"vhosts: expected exactly [{VHOST!r}], found {sorted(map(str, vhosts))}")
    else:
        vhost = actual["vhosts"][0]
        for where in (vhost, vhost.get("metadata", {})):
            if where.get("default_queue_type") != "quorum":
                problems.append(f"vhost {VHOST}: default_queue_type must be 'quorum' (top level and metadata)")
                break
    for policy in actual.get("policies", []):
        problems.append(f"policy {policy.get('name')!r}: queue arguments are set by the code only; no policies here")
    for category, key in (("exchanges", ("name",)), ("queues", ("name",)),
                          ("bindings", ("source", "destination", "destination_type", "routing_key"))):
        have = _keyed(actual.get(category, []), key)
        want = _keyed(wanted[category], key)
        if len(have) != len(actual.get(category, [])):
            problems.append(f"{category}: duplicate entries")
        for k in want.keys() - have.keys():
            problems.append(f"{category}: missing {' / '.join(map(str, k))}")
        for k in have.keys() - want.keys():
            problems.append(f"{category}: not declared by services.common.topology: {' / '.join(map(str, k))}")
        for k in want.keys() & have.keys():
            name = " / ".join(map(str, k))
            for field in sorted(set(want[k]) | set(have[k])):
                w, h = want[k].get(field), have[k].get(field)
                if isinstance(w, dict) and isinstance(h, dict):
                    pairs = [(f"{field}[{a!r}]", w.get(a, "<absent>"), h.get(a, "<absent>")) for a in sorted(w | h)]
                else:
                    pairs = [(field, w, h)]
                for label, wv, hv in pairs:
                    if _canonical(wv) != _canonical(hv):
                        problems.append(f"{category} {name}: {label} is {_canonical(hv)} in {DEFINITIONS.name}, "
                                        f"but the code declares {_canonical(wv)}")
    return problems


def units() -> list[str]:
    """The unit codes of rules/units.yaml: each unit's own system gets a RabbitMQ user."""
    from ruamel.yaml import YAML
    loaded = YAML(typ="safe").load(UNITS.read_text(encoding="utf-8"))
    return [str(unit["code"]) for unit in loaded["units"]]


def password_variable(grant: permissions.Grant) -> str:
    """The deploy/.env variable holding ``grant``'s password."""
    if grant.unit is not None:
        return "ZEROERRAND_UNIT_PASSWORD_" + grant.unit.upper()
    return "ZEROERRAND_AMQP_PASSWORD_" + grant.user.removeprefix(USER_PREFIX).upper()


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def users_script() -> str:
    """deploy/rabbitmq/users.sh: sourced by the rabbitmq-users job of compose.yaml, which defines
    ``ctl`` and ``upsert_user``; every password comes from deploy/.env."""
    grants = permissions.grants(units(), USER_PREFIX)
    lines = ["# Generated by deploy/check_definitions.py --write from services/common/permissions.py,",
             "# services/common/topology.py and rules/units.yaml: do not edit (see docs/security.md).",
             "# Sourced by the rabbitmq-users job (compose.yaml), which defines ctl and upsert_user.", ""]
    for grant in grants:
        variable = password_variable(grant)
        lines.append(f": \"${{{variable}:?set {variable} in deploy/.env}}\"")
        for command in permissions.rabbitmqctl_commands(grant, VHOST):
            if command[0] == "add_user":
                lines.append(f"upsert_user {_quote(grant.user)} \"${variable}\" ''")
            else:
                lines.append("ctl " + " ".join(_quote(part) for part in command))
        lines.append("")
    return "\n".join(lines)


COMPOSE = DEPLOY / "compose.yaml"
UNIT_SYSTEMS_LINE = re.compile(r"^(\s*ZEROERRAND_EVALUATION_UNIT_SYSTEMS: ')([^']*)(')$", re.MULTILINE)


def unit_systems() -> str:
    """The evaluation service's ZEROERRAND_EVALUATION_UNIT_SYSTEMS: {RabbitMQ user: unit code}."""
    return json.dumps({g.user: g.unit for g in permissions.grants(units(), USER_PREFIX) if g.unit is not None},
                      separators=(",", ":"))


def compose_with_unit_systems() -> str:
    text = COMPOSE.read_text(encoding="utf-8")
    if len(UNIT_SYSTEMS_LINE.findall(text)) != 1:
        raise SystemExit(f"{COMPOSE}: expected one line ZEROERRAND_EVALUATION_UNIT_SYSTEMS: '...'")
    return UNIT_SYSTEMS_LINE.sub(lambda m: m.group(1) + unit_systems() + m.group(3), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate definitions.json from the code")
    args = parser.parse_args()
    wanted = expected()
    if args.write:
        DEFINITIONS.write_text(json.dumps(wanted, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        USERS.write_text(users_script(), encoding="utf-8")
        COMPOSE.write_text(compose_with_unit_systems(), encoding="utf-8")
        print(f"wrote {DEFINITIONS}, {USERS} and the unit systems in {COMPOSE}")
        return 0
    if not USERS.exists() or USERS.read_text(encoding="utf-8") != users_script():
        print(f"FAIL: {USERS} is not what services/common/permissions.py and rules/units.yaml give: "
              "regenerate it: .venv/bin/python deploy/check_definitions.py --write", file=sys.stderr)
        return 1
    if compose_with_unit_systems() != COMPOSE.read_text(encoding="utf-8"):
        print(f"FAIL: ZEROERRAND_EVALUATION_UNIT_SYSTEMS in {COMPOSE} is not the units' users of rules/units.yaml: "
              "regenerate it: .venv/bin/python deploy/check_definitions.py --write", file=sys.stderr)
        return 1
    try:
        actual = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"FAIL: cannot read {DEFINITIONS}: {exc}", file=sys.stderr)
        return 1
    problems = compare(actual, wanted)
    if problems:
        print(f"FAIL: {DEFINITIONS} differs from services/common/topology.py "
              f"(RabbitMQ would refuse the redeclare with PRECONDITION_FAILED):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Fix the file, or regenerate it: .venv/bin/python deploy/check_definitions.py --write",
              file=sys.stderr)
        return 1
    print(f"OK: {DEFINITIONS.relative_to(DEPLOY.parent)} matches services/common/topology.py: vhost {VHOST}, "
          f"{len(wanted['exchanges'])} exchanges, {len(wanted['queues'])} quorum queues "
          f"({len(topology.CONSUMER_QUEUES)} + {len(topology.CONSUMER_QUEUES)} dead-letter), "
          f"{len(wanted['bindings'])} bindings ({len(topology.EXCHANGE_BINDINGS)} exchange to exchange), no users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
