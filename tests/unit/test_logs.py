"""The services' log lines: JSON with the project and item being handled, personal data masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from services.common.logs import bind_subject, configure_logging, mask_personal, subject_of
from tests.conftest import ALUMINIUM, example


@pytest.fixture
def root_restored() -> Iterator[None]:
    """``configure_logging`` replaces the root logger's handlers (pytest's own among them): put them back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class ItemMessage:
    project_code = "HLXQ-2026-0031"
    item_code = "MA-01"


def test_a_json_line_carries_the_project_and_masks_phone_and_email(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    with bind_subject(ItemMessage()):
        logging.getLogger("services.notifier.delivery").warning(
            "sms to %s failed, e-mail %s too; gateway %s", "13912345678", "wanght@example.cn",
            "https://sms:hunter2@gateway.example.cn/send")
    logging.getLogger("services.other").info("after the message: call 0471-6543210")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["project_code"] == "HLXQ-2026-0031" and first["item_code"] == "MA-01"
    assert first["level"] == "warning" and first["logger"] == "services.notifier.delivery"
    assert first["timestamp"].endswith("Z")
    assert first["event"] == ("sms to 139****5678 failed, e-mail w***@example.cn too; "
                              "gateway https://sms:***@gateway.example.cn/send")
    assert "project_code" not in second  # bound only while the message is handled
    assert second["event"] == "after the message: call 047****3210"
    assert "13912345678" not in out.getvalue() and "wanght@" not in out.getvalue() and "hunter2" not in out.getvalue()


def test_exceptions_are_masked_too(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        raise RuntimeError("no route to lina@example.cn, 13800001111")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    line = json.loads(out.getvalue())
    assert "l***@example.cn, 138****1111" in line["exception"] and "13800001111" not in line["exception"]


def test_text_lines_keep_their_shape(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("text", stream=out)
    with bind_subject(ItemMessage()):
        logging.getLogger("services.notifier.app").warning("to %s", "13912345678")
    text = out.getvalue()
    assert " WARNING services.notifier.app: to 139****5678 [project_code=HLXQ-2026-0031 item_code=MA-01]" in text


def test_ids_and_credit_codes_are_not_taken_for_phone_numbers() -> None:
    text = "event 3f13912345678a0 of 91150100MA0N8XK21Q, count 139123456789"
    assert mask_personal(text) == text


def test_the_subject_of_an_agreement_is_its_project() -> None:
    agreement = example(ALUMINIUM)
    assert subject_of(agreement) == {"project_code": agreement.project.code}


def test_uvicorns_colour_copy_of_a_message_is_left_out(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:8080",
                                            extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m"})
    line = json.loads(out.getvalue())
    assert line["event"] == "Uvicorn running on http://127.0.0.1:8080" and "color_message" not in line
