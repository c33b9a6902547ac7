"""The AsyncAPI 3.0 description of the bus, generated from the code: ``docs/asyncapi.yaml``.

Exchanges, queues, bindings and routing keys come from :mod:`services.common.topology`, payloads
from the Pydantic models of :mod:`services.common.messages` (their validation JSON Schema, draft
2020-12, shared definitions under ``components/schemas``), the AMQP properties from what
:mod:`services.common.bus` and the router set. Regenerate after changing any of them::

    python -m services.common.asyncapi > docs/asyncapi.yaml

``tests/unit/test_asyncapi.py`` fails while the file differs from what this module makes.
"""

from __future__ import annotations

import io
import sys
from typing import Any, get_args

from faststream.rabbit import RabbitExchange, RabbitQueue
from pydantic.json_schema import models_json_schema
from ruamel.yaml import YAML

from services.common.domain import ServiceMode
from services.common.messages import (
    ROUTED_ITEM_TYPE,
    AgreementAmended,
    AgreementSigned,
    AnyCommand,
    AnyEvent,
    ItemRouted,
    ItemUnroutable,
    Message,
    RoutedItem,
)
from services.common.topology import (
    AGREEMENT_AMENDED,
    AGREEMENT_SIGNED,
    AGREEMENTS,
    BINDINGS,
    CONSUMER_QUEUES,
    DEAD,
    EVENTS,
    EXCHANGE_BINDINGS,
    EXCHANGES,
    ITEM_HEADERS,
    ITEMS,
    REQUESTS,
    UNROUTABLE_HEADERS,
    UNROUTABLE_KEY,
    dead_letter_queue,
)

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
AMQP_BINDING_VERSION = "0.3.0"
COMMAND = "python -m services.common.asyncapi > docs/asyncapi.yaml"

# published by the router; every other event on zeroerrand.events is the ledger's (evaluation service)
ROUTER_EVENTS = frozenset({"service.started", "plan.amended", "agreement.rejected", "rules.activated", "rules.rejected"})


def _union(annotated: Any) -> tuple[type[Message], ...]:
    return tuple(get_args(get_args(annotated)[0]))


def _type_of(model: type[Message]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


EVENT_MODELS = tuple(m for m in _union(AnyEvent)
                     if m not in (AgreementSigned, AgreementAmended, ItemRouted, ItemUnroutable))
"""Events published on ``zeroerrand.events`` with their type as routing key (``item.routed`` is
never published: consumers derive it from the routed item)."""
COMMAND_MODELS = _union(AnyCommand)


def _exchange_binding(exchange: RabbitExchange) -> dict[str, Any]:
    return {"name": exchange.name, "type": exchange.type.value, "durable": exchange.durable,
            "autoDelete": exchange.auto_delete, "vhost": "/"}


def _queue_binding(queue: RabbitQueue) -> dict[str, Any]:
    return {"name": queue.name, "durable": queue.durable, "exclusive": queue.exclusive,
            "autoDelete": queue.auto_delete, "vhost": "/"}


def _routing_channel(address: str, exchange: RabbitExchange, description: str, messages: list[str],
                     parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"address": address, "title": f"{exchange.name} {address}", "description": description}
    if parameters:
        channel["parameters"] = parameters
    channel["messages"] = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    channel["bindings"] = {"amqp": {"is": "routingKey", "exchange": _exchange_binding(exchange),
                                    "bindingVersion": AMQP_BINDING_VERSION}}
    return channel


def _item_parameters() -> dict[str, Any]:
    return {
        "mode": {"enum": [mode.value for mode in ServiceMode],
                 "description": "the service mode (RoutedItem.mode): assist 帮办, joint 联办, errand 专业跑腿, consult 咨询"},
        "unit": {"description": "the responsible unit's code (RoutedItem.responsible_unit, rules/units.yaml), "
                                "e.g. planning_construction_bureau",
                 "examples": ["planning_construction_bureau"]},
    }


def _properties(message_id: str, message_type: str, publisher: str) -> dict[str, Any]:
    """The AMQP basic properties the publisher sets (``services.common.bus.BrokerPublisher``)."""
    return {
        "message_id": f"{message_id}; the same on every redelivery and republish: drop duplicates by it",
        "type": message_type,
        "user_id": f"the RabbitMQ user of the connection that published it ({publisher}); RabbitMQ refuses any other",
        "content_type": "application/json",
        "content_encoding": "none: the body is UTF-8 JSON",
        "delivery_mode": "2 (persistent)",
        "app_id": "zeroerrand" if publisher != "a unit's system" else "optional",
    }


def _message(model: type[Message], *, name: str, message_type: str, summary: str, message_id: str, publisher: str,
             headers: tuple[str, ...] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": model.__name__, "summary": summary,
                               "contentType": "application/json"}
    if headers:
        message["headers"] = {"type": "object", "properties": {h: {"type": "string"} for h in headers},
                              "required": list(headers)}
    message["payload"] = {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    message["bindings"] = {"amqp": {"messageType": message_type, "bindingVersion": AMQP_BINDING_VERSION}}
    message["x-amqp-properties"] = _properties(message_id, message_type, publisher)
    return message


def _doc(model: type[Message]) -> str:
    return " ".join((model.__doc__ or model.__name__).split())


def _send(channel: str, messages: list[str], summary: str) -> dict[str, Any]:
    return {"action": "send", "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}}}


def _receive(channel: str, messages: list[str], summary: str) -> dict[str, Any]:
    return {"action": "receive", "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}}}


def _channel_id(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", "_").replace(".", "_").split("_"))


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every exchange, queue, routing key and message, as a dict."""
    messages: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    operations: dict[str, dict[str, Any]] = {}
    consumed_by_queue: dict[str, list[str]] = {}  # exchange name -> messages on it

    # -- agreements
    messages["AgreementSigned"] = _message(
        AgreementSigned, name=AGREEMENT_SIGNED, message_type=AGREEMENT_SIGNED, summary=_doc(AgreementSigned),
        message_id="the event_id", publisher="the enterprise's or an operator's tool (zeroerrand sign)")
    channels["agreementSigned"] = _routing_channel(AGREEMENT_SIGNED, AGREEMENTS, "Signed investment agreements, "
                                                   "for the router.", ["AgreementSigned"])
    operations["signAgreement"] = _send("agreementSigned", ["AgreementSigned"], "Sign an agreement (zeroerrand sign).")
    messages["AgreementAmended"] = _message(
        AgreementAmended, name=AGREEMENT_AMENDED, message_type=AGREEMENT_AMENDED, summary=_doc(AgreementAmended),
        message_id="the event_id", publisher="the enterprise's or an operator's tool (zeroerrand sign --amend)")
    channels["agreementAmended"] = _routing_channel(AGREEMENT_AMENDED, AGREEMENTS, "Supplementary agreements "
                                                    "(补充协议) of projects already served, for the router.",
                                                    ["AgreementAmended"])
    operations["amendAgreement"] = _send("agreementAmended", ["AgreementAmended"],
                                         "Amend a project's agreement (zeroerrand sign --amend).")
    consumed_by_queue[AGREEMENTS.name] = ["AgreementSigned", "AgreementAmended"]

    # -- routed and parked items
    messages["RoutedItem"] = _message(
        RoutedItem, name=ROUTED_ITEM_TYPE, message_type=ROUTED_ITEM_TYPE, summary=_doc(RoutedItem),
        message_id="the item_id", publisher="the router", headers=ITEM_HEADERS)
    messages["ItemUnroutable"] = _message(
        ItemUnroutable, name=_type_of(ItemUnroutable), message_type=_type_of(ItemUnroutable),
        summary=_doc(ItemUnroutable), message_id="the item_id", publisher="the router", headers=UNROUTABLE_HEADERS)
    channels["routedItems"] = _routing_channel(
        "{mode}.{unit}", ITEMS, "Each routed approval item, once, with routing key {mode}.{unit}: a unit's system "
        "binds its own queue with e.g. joint.planning_construction_bureau (docs/downstream.md).",
        ["RoutedItem"], _item_parameters())
    channels["unroutableItems"] = _routing_channel(UNROUTABLE_KEY, ITEMS, "Items no rule could place.",
                                                   ["ItemUnroutable"])
    operations["publishRoutedItem"] = _send("routedItems", ["RoutedItem"], "The router publishes each routed item.")
    operations["publishUnroutableItem"] = _send("unroutableItems", ["ItemUnroutable"],
                                                "The router parks an item no rule could place.")
    operations["receiveUnitItems"] = _receive(
        "routedItems", ["RoutedItem"], "A unit's own system receives its items on its own durable queue bound "
        "with {mode}.{unit} (examples/downstream_consumer.py).")
    consumed_by_queue[ITEMS.name] = ["RoutedItem", "ItemUnroutable"]

    # -- events: the services' own, plus every message of zeroerrand.items by the exchange binding
    channels["eventsRoutedItems"] = _routing_channel(
        "{mode}.{unit}", EVENTS, "The routed items of zeroerrand.items, unchanged, by the exchange binding "
        "zeroerrand.items -> zeroerrand.events (#); consumers read an approval.item as the event item.routed.",
        ["RoutedItem"], _item_parameters())
    channels["eventsUnroutableItems"] = _routing_channel(
        UNROUTABLE_KEY, EVENTS, "The parked items of zeroerrand.items, by the exchange binding.", ["ItemUnroutable"])
    event_names = []
    for model in EVENT_MODELS:
        event_type = _type_of(model)
        publisher = "the router" if event_type in ROUTER_EVENTS else "the evaluation service (the ledger)"
        messages[model.__name__] = _message(model, name=event_type, message_type=event_type, summary=_doc(model),
                                            message_id="the event_id", publisher=publisher)
        channel_id = "event" + _channel_id(event_type)
        channels[channel_id] = _routing_channel(event_type, EVENTS, f"The event {event_type}, published by "
                                                f"{publisher}.", [model.__name__])
        operations["publish" + _channel_id(channel_id)] = _send(channel_id, [model.__name__],
                                                                f"{publisher[:1].upper()}{publisher[1:]} publishes "
                                                                f"{event_type}.")
        event_names.append(model.__name__)
    consumed_by_queue[EVENTS.name] = [*event_names, "RoutedItem", "ItemUnroutable"]

    # -- requests to the ledger
    request_names = []
    for model in COMMAND_MODELS:
        request_type = _type_of(model)
        messages[model.__name__] = _message(
            model, name=request_type, message_type=request_type, summary=_doc(model),
            message_id="the request_id (the sender's idempotency key)", publisher="a unit's system")
        channel_id = "request" + _channel_id(request_type)
        channels[channel_id] = _routing_channel(
            request_type, REQUESTS, f"The request {request_type} to the ledger, routing key = its type "
            "(docs/progress-events.md).", [model.__name__])
        operations["send" + _channel_id(channel_id)] = _send(
            channel_id, [model.__name__], f"A unit's system (or zeroerrand's CLI, or the console) requests "
            f"{request_type}.")
        request_names.append(model.__name__)
    consumed_by_queue[REQUESTS.name] = request_names

    # -- the services' queues, their bindings and dead-letter queues
    bound = {queue.name: exchange for exchange, queue in BINDINGS}
    for queue in CONSUMER_QUEUES:
        exchange = bound[queue.name]
        carried = consumed_by_queue[exchange.name]
        routing_key = queue.routing()
        if exchange is ITEMS and routing_key == UNROUTABLE_KEY:
            carried = ["ItemUnroutable"]
        elif exchange is ITEMS:
            carried = ["RoutedItem"]
        channel_id = "queue" + _channel_id(queue.name)
        channel: dict[str, Any] = {
            "address": queue.name, "title": queue.name,
            "description": f"Durable quorum queue bound to {exchange.name} with {routing_key}; poison and malformed "
                           f"messages are parked on {dead_letter_queue(queue).name}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in carried},
            "bindings": {"amqp": {"is": "queue", "queue": _queue_binding(queue), "bindingVersion": AMQP_BINDING_VERSION}},
            "x-zeroerrand-queue": {
                "arguments": dict(queue.arguments or {}),
                "bindings": [{"exchange": exchange.name, "routingKey": routing_key}],
                "deadLetterQueue": {"name": dead_letter_queue(queue).name, "exchange": DEAD.name,
                                    "routingKey": queue.name},
            },
        }
        channels[channel_id] = channel
        operations["consume" + _channel_id(channel_id)] = _receive(
            channel_id, list(carried), f"The services consume {queue.name}.")

    schemas = _schemas([AgreementSigned, AgreementAmended, RoutedItem, ItemUnroutable, *EVENT_MODELS, *COMMAND_MODELS])
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "零跑腿 Zero Errand message bus",
            "version": "1",
            "description": "Exchanges, routing keys, queues and messages of Zero Errand on RabbitMQ, generated from "
                           "services/common/topology.py and services/common/messages.py. Regenerate with: "
                           f"{COMMAND}. For a unit's own system: docs/downstream.md; requests: docs/progress-events.md.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
        "x-zeroerrand-exchanges": [_exchange_binding(exchange) for exchange in EXCHANGES],
        "x-zeroerrand-exchange-bindings": [{"source": source.name, "destination": destination.name,
                                            "routingKey": key} for source, destination, key in EXCHANGE_BINDINGS],
    }


def _schemas(models: list[type[Message]]) -> dict[str, Any]:
    """Every model's validation JSON Schema, with the definitions they share, referenced from the
    document's root (``#/components/schemas/<name>``)."""
    top, shared = models_json_schema([(model, "validation") for model in models],
                                     ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = dict(shared.get("$defs", {}))
    for model in models:  # a model named in the list is itself a reference into the definitions
        assert top[(model, "validation")] == {"$ref": f"#/components/schemas/{model.__name__}"}
    return {name: definitions[name] for name in sorted(definitions)}


def render(document: dict[str, Any]) -> str:
    """The document as block-style YAML, keys in the order the generator put them."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.allow_unicode = True
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def main() -> None:
    sys.stdout.buffer.write(render(asyncapi_document()).encode())


if __name__ == "__main__":
    main()
