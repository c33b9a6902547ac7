"""docs/asyncapi.yaml is what the generator makes from the code now, and a well-formed AsyncAPI 3 document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from services.common.asyncapi import COMMAND, COMMAND_MODELS, EVENT_MODELS, asyncapi_document, render
from services.common.topology import CONSUMER_QUEUES, EXCHANGES

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def test_the_committed_document_is_what_the_generator_makes_now(document: dict[str, Any]) -> None:
    assert DOCUMENT.exists(), f"docs/asyncapi.yaml is missing: generate it with `{COMMAND}`"
    if DOCUMENT.read_text(encoding="utf-8") != render(document):
        pytest.fail(f"docs/asyncapi.yaml differs from what the code describes now: regenerate it with `{COMMAND}`")


def test_the_document_parses_back_to_the_same_structure(document: dict[str, Any]) -> None:
    assert YAML(typ="safe", pure=True).load(render(document)) == document


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_required_top_level_keys_and_version(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= document["info"].keys()
    allowed = {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"}
    assert all(key in allowed or key.startswith("x-") for key in document), set(document) - allowed


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    every = refs(document)
    assert every
    for ref in every:
        resolve(document, ref)


def test_every_channel_message_resolves_to_a_message_with_a_payload(document: dict[str, Any]) -> None:
    for channel_id, channel in document["channels"].items():
        assert channel["messages"], channel_id
        for message in channel["messages"].values():
            target = resolve(document, message["$ref"])
            assert {"name", "payload", "contentType"} <= target.keys(), channel_id
            resolve(document, target["payload"]["schema"]["$ref"])
            address = channel["address"]
            for parameter in {p.strip("{}") for p in address.split(".") if p.startswith("{")}:
                assert parameter in channel.get("parameters", {}), (channel_id, parameter)


def test_every_operation_references_a_channel_and_messages_of_that_channel(document: dict[str, Any]) -> None:
    assert document["operations"]
    for operation_id, operation in document["operations"].items():
        assert operation["action"] in {"send", "receive"}, operation_id
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), operation_id
        resolve(document, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), (operation_id, message)
            resolve(document, message["$ref"])


def test_it_names_every_exchange_queue_and_message(document: dict[str, Any]) -> None:
    exchanges = {e["name"] for e in document["x-zeroerrand-exchanges"]}
    assert exchanges == {e.name for e in EXCHANGES}
    queues = {c["bindings"]["amqp"]["queue"]["name"] for c in document["channels"].values()
              if c["bindings"]["amqp"]["is"] == "queue"}
    assert queues == {q.name for q in CONSUMER_QUEUES}
    names = {m["name"] for m in document["components"]["messages"].values()}
    expected = {"agreement.signed", "agreement.amended", "approval.item", "item.unroutable"}
    expected |= {m.model_fields["type"].default for m in (*EVENT_MODELS, *COMMAND_MODELS)}
    assert names == expected
    item = document["components"]["messages"]["RoutedItem"]
    assert item["bindings"]["amqp"]["messageType"] == "approval.item"
    assert "item_id" in item["x-amqp-properties"]["message_id"]
    routed = document["channels"]["routedItems"]
    assert routed["address"] == "{mode}.{unit}"
    assert routed["bindings"]["amqp"]["exchange"]["name"] == "zeroerrand.items"
    requests = [c for c in document["channels"].values() if c["bindings"]["amqp"].get("exchange", {}).get("name")
                == "zeroerrand.requests"]
    assert {c["address"] for c in requests} == {m.model_fields["type"].default for m in COMMAND_MODELS}
