"""The demo's progress on the terminal: one Rich progress bar per phase, plain lines otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.demo.run import Phases


class RichPhases(Phases):
    """One progress bar per phase; plain lines when the output is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=console,
                                 disable=not console.is_terminal)
        self.task: TaskID | None = None
        self.name = ""
        self.started = 0.0

    def start(self, name: str, total: int) -> None:
        self.name = name
        self.started = datetime.now(UTC).timestamp()
        if not self.progress.live.is_started and self.progress.console.is_terminal:
            self.progress.start()
        self.task = self.progress.add_task(name, total=total, note="")
        if not self.console.is_terminal:
            print(f"demo: {name}…", flush=True)

    def advance(self, steps: int = 1, note: str = "") -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=steps, note=note)

    def end(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            self.progress.update(self.task, completed=task.total)
        if not self.console.is_terminal:
            print(f"demo: {self.name} 完成（{datetime.now(UTC).timestamp() - self.started:.1f} 秒）", flush=True)

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()
