"""The contacts the console shows the enterprise: the directory's contact and optional phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.yaml_files import RulesError
from services.console.service import Rules


def test_a_units_phone_is_shown_with_its_contact_and_checked(rules_copy: Path) -> None:
    directory = rules_copy / "directory.yaml"
    text = directory.read_text()
    directory.write_text(text.replace("    contact: 政务服务局帮办代办服务专班\n",
                                      "    contact: 政务服务局帮办代办服务专班\n    phone: \"0471-6600000\"\n", 1))
    contacts = Rules.load(rules_copy).contacts
    assert contacts["gov_service_bureau"] == "政务服务局帮办代办服务专班，电话 0471-6600000"
    assert contacts["planning_construction_bureau"] == "规划建设局审批科"
    directory.write_text(text.replace("    contact: 政务服务局帮办代办服务专班\n",
                                      "    contact: 政务服务局帮办代办服务专班\n    phone: \"<b>call</b>\"\n", 1))
    with pytest.raises(RulesError) as refused:
        Rules.load(rules_copy)
    assert "directory.yaml:" in str(refused.value.problems[0]) and "phone" in str(refused.value.problems[0])


def test_the_public_address_defaults_to_where_the_console_listens() -> None:
    from services.common.settings import ConsoleSettings

    assert ConsoleSettings(port=8181).public_url == "http://127.0.0.1:8181"
    assert ConsoleSettings(host="0.0.0.0", port=9000).public_url == "http://127.0.0.1:9000"
    assert ConsoleSettings(public_url="https://fuwu.example.cn").public_url == "https://fuwu.example.cn"
    assert ConsoleSettings(public_url="https://fuwu.example.cn").cookies_secure
