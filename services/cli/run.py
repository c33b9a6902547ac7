"""Running the services: each alone, all of them (``up``), or the web console."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from services.cli._common import fail_problems


def router() -> None:
    """运行路由服务：消费 agreement.signed，按规则把每个审批事项投递到对应队列；规则文件改动后自动生效。"""
    from services.router.app import create_router

    service = create_router()
    run_apps(service.app, watched=[service.watched()])


def notifier() -> None:
    """运行通知服务：把事件变成发给企业、招引单位、承办单位等的通知，存储并投递（站内信、Webhook）。"""
    from services.notifier.app import create_notifier

    service = create_notifier()
    run_apps(service.app, watched=[service.watched()])


def evaluation() -> None:
    """运行评价服务：维护年度综合评价台账（项目、事项状态、时限、堵点、评价），定时发出超时预警。"""
    from services.evaluation.app import create_evaluation

    service = create_evaluation()
    run_apps(service.app, watched=[service.watched()])


def up(no_console: Annotated[bool, typer.Option("--no-console", help="不启动服务台（网页）")] = False) -> None:
    """一条命令运行全部服务（路由 + 通知 + 评价 + 服务台网页，默认 http://127.0.0.1:8080），
    未设置 MONGODB_URL 时使用内置存储；Ctrl-C 停止。"""
    from services.cli.supervise import ConsoleProcess
    from services.common.settings import ConsoleSettings
    from services.evaluation.app import create_evaluation
    from services.notifier.app import create_notifier
    from services.router.app import create_router

    router, notifier, evaluation = create_router(), create_notifier(), create_evaluation()
    services: list[Any] = [router.app, notifier.app, evaluation.app]
    watched = [router.watched(), notifier.watched(), evaluation.watched()]
    if not no_console:
        _console()  # its settings and rule files checked here: up does not start without a console that can
        # its own process, started once the others run (and the embedded store with them), stopped
        # first; see services/cli/supervise.py
        services.append(ConsoleProcess(nice=ConsoleSettings().nice))
    run_apps(*services, watched=watched)


def console(port: Annotated[int | None, typer.Option(help="端口（默认 ZEROERRAND_CONSOLE_PORT 或 8080）")] = None,
            host: Annotated[str | None, typer.Option(help="监听地址（默认 ZEROERRAND_CONSOLE_HOST 或 127.0.0.1）")] = None,
            ) -> None:
    """只运行服务台（网页）：企业凭访问码查看项目进度，各单位工作人员登录办理；可运行多个副本，共用同一存储。"""
    import os

    if port is not None:
        os.environ["ZEROERRAND_CONSOLE_PORT"] = str(port)
    if host is not None:
        os.environ["ZEROERRAND_CONSOLE_HOST"] = host
    from services.cli.supervise import tell_ready

    service = _console()
    run_apps(service, watched=[service.watched()], started=lambda: tell_ready(service.port))


def _console() -> Any:
    from services.common.yaml_files import RulesError
    from services.console.app import create_console

    try:
        return create_console()
    except RulesError as exc:
        fail_problems("规则文件", exc, "，服务台未启动")


def run_apps(*apps: Any, watched: Sequence[Any] = (), started: Callable[[], None] | None = None) -> None:
    """Starts FastStream apps in one process and stops them, in reverse, on Ctrl-C or SIGTERM (exit 0),
    or when a service gives up on its store (exit ``EXIT_STORE_LOST``, 75: ``services.common.storage``); with
    ``ZEROERRAND_METRICS_PORT`` set, serves ``/metrics`` and ``/health`` for the ``watched`` services
    (``services.common.operations``) once they have started, until they stop. ``started`` is called
    once all have started. An app with a ``failed`` coroutine (the console process of ``up``) stops
    them all too when it returns, and the process then exits with status 1 saying why."""
    import signal

    from services.cli.supervise import ConsoleDied, ConsoleProcess
    from services.common.logs import configure_logging
    from services.common.operations import OperationsServer
    from services.common.settings import OperationsSettings

    operations = OperationsSettings()
    configure_logging(operations.log_format)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        running: list[Any] = []
        endpoint = OperationsServer(watched, operations) if operations.metrics_port is not None else None
        failure: str | None = None
        try:
            for service in apps:
                await service.start()
                running.append(service)
            if endpoint is not None:
                await endpoint.start()
            if started is not None:
                started()
            waits = [asyncio.ensure_future(stop.wait()),
                     *(asyncio.ensure_future(s.failed()) for s in running if hasattr(s, "failed"))]
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            failure = next((str(t.result()) for t in done if isinstance(t.result(), str)), None)
        finally:
            if endpoint is not None:
                await endpoint.stop()
            # the console's process first: it is a client of the embedded store the others own, and a
            # store closed while a client is registered stays up until that client leaves, after `up`
            # has exited; then the others all at once: each stops consuming, lets its work in flight
            # finish for a few seconds (or go back to its queue) and closes its store, so the process
            # exits within 10 s
            children = [service for service in running if isinstance(service, ConsoleProcess)]
            results = await asyncio.gather(*(service.stop() for service in children), return_exceptions=True)
            results += await asyncio.gather(*(service.stop() for service in reversed(running) if service not in children),
                                            return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    logging.getLogger(__name__).error("stopping a service failed: %r", result)
        if failure is not None:
            raise SystemExit(failure)

    try:
        asyncio.run(run())
    except ConsoleDied as exc:
        raise SystemExit(str(exc)) from None
    from services.common.storage import EXIT_STORE_LOST, store_lost

    lost = store_lost()
    if lost is not None:  # a supervisor must see a failure, and start it again
        typer.echo(f"存储已不可用，服务已停止（退出码 {EXIT_STORE_LOST}），请重新启动 / gave up on the store: {lost}", err=True)
        raise SystemExit(EXIT_STORE_LOST)
