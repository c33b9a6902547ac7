"""The RabbitMQ definitions shipped in deploy/ declare exactly what the code declares.

A difference would make a service's start fail with PRECONDITION_FAILED on the cluster.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_deploy_definitions_match_the_topology_module() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "check_definitions.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK:")
