"""``users ...``: the web console's accounts."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from services.cli._common import book, fail

users_app = typer.Typer(help="服务台账号 / console accounts.", no_args_is_help=True)

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="从标准输入读取密码（一行），不提示")]


def _password(password_stdin: bool) -> str:
    import sys

    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("密码", hide_input=True, confirmation_prompt="再输入一次"))


def _accounts_do(action: Any) -> Any:
    from services.common.storage import store_session
    from services.console.accounts import COLLECTIONS, AccountError, Accounts

    async def run() -> Any:
        async with store_session(collections=COLLECTIONS) as store:
            return await action(Accounts(store))

    try:
        return asyncio.run(run())
    except AccountError as exc:
        fail(str(exc))


@users_app.command("add")
def users_add(username: Annotated[str, typer.Argument(help="用户名（小写字母开头，3–40 个字符）")],
              unit: Annotated[str, typer.Option(help="所属单位编码（units.yaml；管委会领导：management_committee）")],
              role: Annotated[str, typer.Option(help="gov_service（政务服务局）| econ_dev（经发局）| department（承办部门）"
                                                     "| service_company（政联公司）| recruiting（招引单位）"
                                                     "| leader（管委会领导，只读）")],
              name: Annotated[str, typer.Option(help="姓名（记入台账的操作人）")],
              password_stdin: PasswordStdin = False) -> None:
    """开设服务台账号：一人一号，属于一个单位、一种角色；密码以 Argon2id 散列保存。"""
    from services.console.accounts import MANAGEMENT_COMMITTEE, MANAGEMENT_COMMITTEE_NAME, ROLE_NAMES_ZH, Role

    try:
        chosen = Role(role)
    except ValueError:
        fail(f"--role 只能是 {'、'.join(r.value for r in Role)}")
    units = book(None).units
    password = _password(password_stdin)
    account = _accounts_do(lambda accounts: accounts.add(username, name, unit, chosen, password, units))
    unit_name = MANAGEMENT_COMMITTEE_NAME if unit == MANAGEMENT_COMMITTEE else units[unit].short_name
    typer.echo(f"已开设账号 {account.username}：{account.display_name}，{unit_name}，"
               f"角色 {ROLE_NAMES_ZH[account.role]}")


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="用户名")]) -> None:
    """停用账号：立即失效，已登录的会话也在下一次请求时结束。"""
    _accounts_do(lambda accounts: accounts.set_active(username, False))
    typer.echo(f"已停用账号 {username}")


@users_app.command("reset")
def users_reset(username: Annotated[str, typer.Argument(help="用户名")], password_stdin: PasswordStdin = False) -> None:
    """重置密码（并重新启用）：此前的会话全部失效。"""
    password = _password(password_stdin)
    _accounts_do(lambda accounts: accounts.reset(username, password))
    typer.echo(f"已重置账号 {username} 的密码")


@users_app.command("list")
def users_list() -> None:
    """列出服务台账号。"""
    from services.console.accounts import ROLE_NAMES_ZH

    found = _accounts_do(lambda accounts: accounts.list())
    typer.echo(f"共 {len(found)} 个账号")
    for a in found:
        typer.echo(f"{a.username}\t{a.display_name}\t{a.unit}\t{ROLE_NAMES_ZH[a.role]}\t{'启用' if a.active else '停用'}")
