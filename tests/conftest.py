"""Shared fixtures: the repository's rule files, editable copies of them, and example agreements."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from services.common.agreement_files import load_agreement, to_event
from services.common.messages import AgreementSigned
from services.router.active_rules import load_checked
from services.router.rule_engine import RoutingEngine

# The test suite is a development environment (the notifier may use the development webhook
# secret); the tests of the production refusal say their environment themselves.
os.environ["ZEROERRAND_ENVIRONMENT"] = "development"
# A router made in a test archives no rules versions (it would open the store of var/); the tests of
# the archive give the router their own store (tests/integration/test_rules_history.py).
os.environ.setdefault("ZEROERRAND_ROUTER_ARCHIVE_RULES", "false")
# Likewise the agreements a router takes are kept in its process only; the tests of amendments give
# the router a registry on their own store (tests/integration/test_amendments.py).
os.environ.setdefault("ZEROERRAND_ROUTER_AGREEMENT_REGISTRY", "memory")

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
EXAMPLES = ROOT / "examples" / "agreements"


@pytest.fixture(scope="session")
def engine() -> RoutingEngine:
    return load_checked(RULES)


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private, editable copy of the rule files."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def example(name: str, **project_update: object) -> AgreementSigned:
    """An example agreement as the router receives it; ``suffix`` makes its ids unique."""
    event = to_event(load_agreement(EXAMPLES / name))
    suffix = project_update.pop("suffix", None)
    if suffix:
        project = event.project.model_copy(update={"code": f"{event.project.code}-{suffix}"})
        event = event.model_copy(update={"agreement_id": f"{event.agreement_id}-{suffix}", "project": project,
                                         "event_id": f"{event.event_id}-{suffix}"})
    return event


ALUMINIUM = "hl-2026-0031-aluminium-frames.yaml"
COMPUTING = "hl-2026-0047-intelligent-computing-centre.yaml"
INELIGIBLE = "hl-2026-0052-not-eligible.yaml"
CONSULT_UNKNOWN = "hl-2026-0058-consult-and-unknown.yaml"
