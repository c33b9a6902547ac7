"""``demo``: a simulated year (the work is in ``services.demo``): its options and the closing summary."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from services.demo.run import DemoFigures, DemoOptions


def demo(projects: Annotated[int, typer.Option(min=1, max=2000, help="模拟签约的项目数")] = 300,
         year: Annotated[int | None, typer.Option(help="模拟哪一年（默认今年，模拟到昨天）")] = None,
         seed: Annotated[int, typer.Option(help="随机种子：同样的种子、年度、项目数得到同样的一年")] = 1,
         out: Annotated[Path | None, typer.Option(help="年度报告目录（默认 reports/demo-<年度>）")] = None) -> None:
    """演示：模拟一整年——按日签约（补录）、各单位和企业推进事项（含堵点、中止、超时）、综合测评，最后写出年度报告。
    zeroerrand up 在运行时使用它的服务，否则在后台启动服务并在结束时停止；
    只能在开发环境（ZEROERRAND_ENVIRONMENT=development）运行。"""
    from rich.console import Console

    from services.common.settings import (
        PROJECT_ROOT,
        BrokerUnavailable,
        ConsoleSettings,
        EvaluationSettings,
        RuntimeSettings,
        SettingsError,
    )
    from services.common.yaml_files import RulesError
    from services.demo.progress import RichPhases
    from services.demo.run import DemoError, DemoOptions, run_demo
    from services.evaluation.ledger import local_day

    try:
        development = RuntimeSettings.load().development
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not development:
        typer.echo("演示会向台账写入模拟的项目和事项，只能在开发环境运行：请设置 ZEROERRAND_ENVIRONMENT=development "
                   "/ the demo writes simulated projects into the ledger: development only", err=True)
        raise typer.Exit(1)
    chosen = year or local_day(datetime.now(UTC)).year
    options = DemoOptions(projects=projects, year=chosen, seed=seed,
                          out=out or PROJECT_ROOT / "reports" / f"demo-{chosen}", rules_dir=EvaluationSettings().rules_dir)
    console = Console(stderr=False)
    phases = RichPhases(console)
    # SIGTERM and SIGHUP (kill, timeout, a closed terminal) stop it as Ctrl-C does: its background
    # services are stopped, not left behind
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, _interrupt)
    try:
        figures = asyncio.run(run_demo(options, phases))
    except KeyboardInterrupt:
        phases.stop()
        typer.echo("已中断：后台服务已停止。再次运行同样的命令会从头重放，已处理的请求不会重复。", err=True)
        raise typer.Exit(130) from None
    except (DemoError, RulesError, SettingsError, BrokerUnavailable) as exc:
        phases.stop()
        typer.echo(f"演示未能完成：{exc}", err=True)
        raise typer.Exit(1) from None
    phases.stop()
    _summary(options, figures, ConsoleSettings().public_url)
    if figures.requests.get("refused"):
        raise typer.Exit(1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _summary(options: DemoOptions, figures: DemoFigures, console_url: str) -> None:
    requests = figures.requests
    lines = [
        f"{options.year} 年演示完成（种子 {options.seed}，模拟到 {figures.last_day}）"
        + ("；服务由演示在后台启动，已停止" if figures.started_services else "；使用正在运行的服务"),
        f"  签约项目 {figures.signed} 个，台账事项 {figures.lines} 项，无法分派 {figures.unroutable} 项",
        f"  请求：已接受 {requests.get('applied', 0)}（再次运行时含此前已处理的），被拒绝 {requests.get('refused', 0)}",
        f"  堵点 {figures.blocked} 次，中止待补正 {figures.suspended} 次，超过承诺时限办结 {figures.late} 项，"
        f"年内移交 {figures.delivered} 项，超时提醒 {figures.overdue_notices} 条",
        f"  综合测评 {figures.assessments} 份，差评 {figures.bad} 份，已整改 {figures.rectified} 份",
    ]
    if not figures.drained:
        lines.append("  通知服务尚未处理完全部事件：其余的留在队列中，服务下次运行时处理")
    for reason in figures.refusals[:5]:
        lines.append(f"  被拒绝：{reason}")
    typer.echo("\n".join(lines))
    typer.echo(figures.summary)
    index = next((p for p in figures.report_files if p.suffix == ".html"), None)
    typer.echo(f"年度报告：{index or options.out}（CSV 在同一目录）")
    typer.echo(f"在服务台查看：zeroerrand up，然后打开 {console_url}（zeroerrand users add 建账号）")
    sys.stdout.flush()
