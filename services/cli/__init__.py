"""``zeroerrand``: the operator's entry point (run services, sign agreements, check and explain rules,
report to the ledger, the annual evaluation, console accounts, backups of the embedded store).

This module only wires the commands: each lives in the module of its subject, as a short function
over the services' own views and commands. A new top-level command is registered below in the
order ``--help`` lists it; a new group is a ``typer.Typer`` in its module, added with ``add_typer``.
"""

from __future__ import annotations

import typer

from services.cli import agreements, dead_letters, demo, evaluation, items, ledger, notifications, rules, run, store, users

app = typer.Typer(help="“企业零跑腿”服务系统 / Zero Errand: 路由、通知、评价服务与运维命令。", no_args_is_help=True,
                  pretty_exceptions_enable=False)

for command in (run.router, run.notifier, run.evaluation, run.up, run.console, agreements.sign,
                evaluation.assess, evaluation.rectify, ledger.sweep, evaluation.report, demo.demo):
    app.command()(command)

app.add_typer(rules.rules_app, name="rules")
app.add_typer(rules.catalog_app, name="catalog")
app.add_typer(notifications.notifications_app, name="notifications")
app.add_typer(items.item_app, name="item")
app.add_typer(items.task_order_app, name="task-order")
app.add_typer(ledger.ledger_app, name="ledger")
app.add_typer(users.users_app, name="users")
app.add_typer(store.store_app, name="store")
app.add_typer(dead_letters.dead_letters_app, name="dead-letters")


def main() -> None:
    from services.common.settings import BrokerUnavailable, SettingsError
    from services.common.storage import StoreSchemaError, StoreUnavailable

    try:
        app(prog_name="zeroerrand")
    except (StoreUnavailable, StoreSchemaError, SettingsError, BrokerUnavailable) as exc:  # said in a line, not a traceback
        typer.echo(str(exc), err=True)
        raise SystemExit(1) from None


__all__ = ["app", "main"]
