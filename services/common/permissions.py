"""Least privilege on RabbitMQ: one user per service and per unit's own system, and what each may do.

Derived from ``services.common.topology`` (the names) and ``rules/units.yaml`` (the units), so a
new queue or unit changes the grants with it. ``deploy/check_definitions.py --write`` writes them as
``deploy/rabbitmq/users.sh`` (rabbitmqctl commands; passwords from the environment, never in the
repository), which the ``rabbitmq-users`` job of ``deploy/compose.yaml`` runs.

RabbitMQ checks, per vhost and user, three regular expressions against resource names:
*configure* (declare, delete), *write* (publish to an exchange; bind to a queue or exchange as the
destination), *read* (consume or get from a queue; bind from an exchange as the source); and, per
topic exchange, *topic* permissions on routing keys (write: publishing). The services declare the
whole topology at every start (``declare_topology``, and the publisher declares each exchange
before its first publish), and a declare needs configure even when nothing changes, and binding
every queue needs write on each queue and read on each exchange: every service user therefore has
configure on exactly the topology's names (no other name), write on every topology queue (no
exchange beyond its own), and read on every exchange, but reads only its own queues. Configure
also allows deleting those names: declaring the topology as an administrator only (definitions
file) and passive declares in the services would remove that, see docs/security.md. Re-declaring
is all these grants allow: creating a queue with a dead-letter exchange also needs read on it, so
on an empty vhost the administrator makes the topology first (deploy/ imports definitions.json at
boot; tests/integration/test_own_users_e2e.py checks both).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.common import messages, topology

SERVICES = ("router", "notifier", "evaluation", "console", "operator")


@dataclass(frozen=True)
class Grant:
    """One RabbitMQ user's permissions in the vhost; ``topic``: exchange → (write, read) key regexes."""

    user: str
    configure: str
    write: str
    read: str
    topic: dict[str, tuple[str, str]] = field(default_factory=dict)
    unit: str | None = None  # the unit a department system's user speaks for


def _names(names: Iterable[str]) -> str:
    """A regex matching exactly these names (RabbitMQ matches it unanchored: anchored here)."""
    ordered = sorted(set(names))
    return "^(" + "|".join(re.escape(n) for n in ordered) + ")$" if ordered else "^$"


def request_types() -> tuple[str, ...]:
    """The routing keys of ``zeroerrand.requests``: the type of every request the ledger accepts."""
    union = typing.get_args(messages.AnyCommand)[0]
    return tuple(sorted(c.model_fields["type"].default for c in typing.get_args(union)))


def unit_queue(unit: str) -> str:
    """The queue a unit's own system declares and binds to ``zeroerrand.items`` (``*.UNIT``)."""
    return f"zeroerrand.unit.{unit}"


def unit_user(unit: str, prefix: str = "") -> str:
    return f"{prefix}unit.{unit}"


def grants(units: Iterable[str], prefix: str = "") -> list[Grant]:
    """Every user (names prefixed with ``prefix``, for tests) and its permissions."""
    exchanges = [x.name for x in topology.EXCHANGES]
    queues = [q.name for q in topology.CONSUMER_QUEUES]
    queues += [topology.dead_letter_queue(q).name for q in topology.CONSUMER_QUEUES]
    declared = exchanges + queues
    configure = _names(declared)
    no_keys = "^$"

    def service(name: str, publishes: list[str], reads: list[str],
                topic: dict[str, tuple[str, str]] | None = None) -> Grant:
        # write: its exchanges, the dead letters (parking), every queue and zeroerrand.events as
        # binding destinations (declare_topology); read: every exchange as a binding source, its queues.
        # zeroerrand.events is writable for the exchange binding only: a service that does not
        # announce events may publish no routing key there (topic permission).
        topic = dict(topic or {})
        if topology.EVENTS.name not in publishes:
            topic[topology.EVENTS.name] = (no_keys, ".*")
        writes = _names([*publishes, topology.DEAD.name, *queues, topology.EVENTS.name])
        return Grant(prefix + name, configure, writes, _names(exchanges + reads), topic)

    requests_keys = _names(request_types())
    result = [
        service("router", [topology.ITEMS.name, topology.EVENTS.name], [topology.ROUTER_QUEUE.name]),
        service("notifier", [], [topology.NOTIFIER_QUEUE.name]),
        service("evaluation", [topology.EVENTS.name],
                [topology.EVALUATION_QUEUE.name, topology.LEDGER_REQUESTS_QUEUE.name]),
        service("console", [topology.REQUESTS.name], [], {topology.REQUESTS.name: (requests_keys, ".*")}),
        # operators' CLI (zeroerrand sign, requests): agreements and requests, reads nothing
        service("operator", [topology.AGREEMENTS.name, topology.REQUESTS.name], []),
    ]
    for unit in units:
        own = unit_queue(unit)
        result.append(Grant(
            unit_user(unit, prefix),
            configure=_names([own]),
            write=_names([own, topology.REQUESTS.name]),
            read=_names([own, topology.ITEMS.name]),
            # publishing: request types only; binding from zeroerrand.items: its own keys only
            topic={topology.REQUESTS.name: (requests_keys, no_keys),
                   topology.ITEMS.name: (no_keys, f"^[^.]+\\.{re.escape(unit)}$")},
            unit=unit))
    return result


PASSWORD_PLACEHOLDER = "\0password"


def rabbitmqctl_commands(grant: Grant, vhost: str) -> list[list[str]]:
    """The rabbitmqctl arguments that create ``grant``'s user (password: ``PASSWORD_PLACEHOLDER``)
    and set its permissions and topic permissions in ``vhost``."""
    commands = [["add_user", grant.user, PASSWORD_PLACEHOLDER],
                ["set_permissions", "-p", vhost, grant.user, grant.configure, grant.write, grant.read]]
    for exchange, (write, read) in sorted(grant.topic.items()):
        commands.append(["set_topic_permissions", "-p", vhost, grant.user, exchange, write, read])
    return commands
