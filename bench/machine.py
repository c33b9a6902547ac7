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
