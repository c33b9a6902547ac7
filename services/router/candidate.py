"""Checking a candidate rules version in a child process, bounded in time and memory.

An operator saves rule files while the router routes. Reading, validating and statically checking
them is work whose cost the files decide (a file can be built to take minutes or gigabytes), so it
never runs in the router's process: ``check_candidate`` hands the files' bytes to a child Python
(``python -c 'from services.router.candidate import main; main()'``), which limits its own address
space first (``RLIMIT_AS``) and answers with the problems found, as JSON. A child that outlives
the time limit is killed; one that runs out of memory or dies is a problem too. Every outcome is
a list of problems naming the operator's files, so a refused candidate is announced like any
other invalid rules version, and the rules in force keep routing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import services
from services.common.rule_files import ROUTING_FILE
from services.common.yaml_files import Problem, RulesError

# at most this many problems come back (an operator reads the first ones; the rest is the same mistake)
MAX_PROBLEMS = 200
_PACKAGE_PARENT = str(Path(services.__file__).resolve().parents[1])
_READING = "reading "


def _check(directory: Path, contents: Mapping[str, bytes]) -> list[Problem]:
    from services.common.rule_files import load_rulebook
    from services.router.rule_engine import RoutingEngine
    from services.router.rules_check import check_rules

    def reading(path: str) -> None:  # the parent names this file if the check is cut short
        sys.stderr.write(f"{_READING}{path}\n")
        sys.stderr.flush()

    try:
        book = load_rulebook(directory, contents, reading)
        reading(str(directory / ROUTING_FILE))  # the static check: the routing rules' cases
        return list(check_rules(book, RoutingEngine(book)).problems)
    except RulesError as exc:
        return list(exc.problems)
    except MemoryError:
        return [Problem(str(directory), None, None, "检查规则时内存超过上限，拒绝该版本 / out of memory while checking")]
    except RecursionError:
        return [Problem(str(directory), None, None, "规则文件嵌套过深，拒绝该版本 / nested too deeply")]


def main() -> None:
    """The child: reads ``{"directory", "memory_bytes", "files": {name: base64}}`` on stdin and
    writes ``{"problems": [...]}`` on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    limit = int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    directory = Path(request["directory"])
    contents = {name: base64.b64decode(data) for name, data in request["files"].items()}
    problems = _check(directory, contents)
    sys.stdout.write(json.dumps({"problems": [asdict(p) for p in problems[:MAX_PROBLEMS]]}, ensure_ascii=False))


async def check_candidate(directory: Path, contents: Mapping[str, bytes], *, timeout_s: float,
                          memory_bytes: int) -> tuple[Problem, ...]:
    """The problems of the candidate ``contents`` (the bytes of the rule files read from
    ``directory``); empty when it may go live. Never raises for anything the files cause."""
    shown = str(directory)
    request = json.dumps({"directory": shown, "memory_bytes": memory_bytes,
                          "files": {name: base64.b64encode(data).decode() for name, data in contents.items()}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.router.candidate import main; main()",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdin.write(request.encode())
    child.stdin.close()
    stderr: list[str] = []

    async def read_stderr() -> None:
        assert child.stderr is not None
        async for line in child.stderr:
            stderr.append(line.decode(errors="replace").rstrip("\n"))
            del stderr[:-50]

    try:
        out, _, _ = await asyncio.wait_for(asyncio.gather(child.stdout.read(), read_stderr(), child.wait()), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        where = next((line.removeprefix(_READING) for line in reversed(stderr) if line.startswith(_READING)), shown)
        return (Problem(where, None, None, f"检查规则超过 {timeout_s:g} 秒仍未完成（正在检查这个文件），已中止，"
                                           "拒绝该版本 / checking took too long"),)
    except BaseException:  # cancelled (the router stops): the child must not outlive the check
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    try:
        answer: Any = json.loads(out)
        return tuple(Problem(**p) for p in answer["problems"])
    except (ValueError, KeyError, TypeError):
        tail = [line for line in stderr if not line.startswith(_READING)][-3:]
        return (Problem(shown, None, None, f"检查规则的子进程异常退出（退出码 {child.returncode}），拒绝该版本 / "
                                           f"checker died: {' | '.join(tail)}"),)
