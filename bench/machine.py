"""What machine a benchmark ran on, for the figures it prints (CPU model, cores, memory, Python)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> str:
    model = "unknown CPU"
    memory = "? GiB"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    except OSError:
        pass
    return (f"{platform.node()}: {model}, {os.cpu_count()} cores, {memory} RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far, by kind of process: this benchmark's own process,
    FerretDB, PostgreSQL, RabbitMQ, and the rest. Two readings subtracted give where a phase's time
    went (Linux only; empty elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        pid = int(stat.parent.name)
        kind = ("this benchmark" if pid == os.getpid() else "FerretDB" if name.startswith("ferretdb")
                else "PostgreSQL" if name.startswith("postgres") else "RabbitMQ" if name in ("beam.smp", "erl_child_setup")
                else "other")
        used[kind] = used.get(kind, 0.0) + seconds
    return used


def cpu_split(before: dict[str, float], after: dict[str, float]) -> str:
    """``kind 1.23 s`` for each kind that used CPU between two readings of ``cpu_seconds``."""
    spent = {kind: after.get(kind, 0.0) - before.get(kind, 0.0) for kind in after}
    return ", ".join(f"{kind} {s:.2f} s" for kind, s in sorted(spent.items(), key=lambda kv: -kv[1]) if s >= 0.01)
