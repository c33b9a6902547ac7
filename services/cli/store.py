"""``store backup`` / ``store verify`` / ``store restore``: backups of the embedded store
(``services.common.backup``, docs/backup.md). With ``MONGODB_URL`` set they refuse and say to use
MongoDB's own tools."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli._common import dump, fail

if TYPE_CHECKING:
    from services.common.backup import Manifest

store_app = typer.Typer(help="内置存储的备份、检查与恢复 / backups of the embedded store.", no_args_is_help=True)

BackupFile = Annotated[Path, typer.Argument(help="备份文件")]
AsJson = Annotated[bool, typer.Option("--json", help="输出清单（JSON）")]


def _embedded_only(command: str) -> None:
    from services.common.settings import StoreSettings

    if StoreSettings().mongodb_url:
        fail(f"已设置 MONGODB_URL：zeroerrand store {command} 只用于内置存储；MongoDB 请用 mongodump / mongorestore"
             "（见 docs/backup.md）/ MONGODB_URL is set: use mongodump and mongorestore")


def _pg_bin(data_dir: Path) -> Path:
    from services.common.embedded_store import StartError, postgres_bin_dir
    from services.common.settings import StoreSettings

    configured = StoreSettings().postgres_bin
    cluster = data_dir / "postgresql"
    try:
        return postgres_bin_dir(str(configured) if configured else None, cluster if cluster.exists() else None)
    except StartError as exc:
        fail(str(exc))


def _store_dir(store_dir: Path | None) -> Path:
    from services.common.settings import StoreSettings

    return (store_dir or StoreSettings().data_dir / "store").resolve()


def _summary(manifest: Manifest, size: int | None = None) -> list[str]:
    lines = [f"  快照时间 {manifest.created_at}（此刻以前提交的数据都在备份中），来源 {manifest.source}，"
             f"PostgreSQL {manifest.server_version}"]
    databases: dict[str, list[Any]] = {}
    for table in manifest.collections:
        databases.setdefault(table.schema, []).append(table)
    for database, tables in sorted(databases.items()):
        lines.append(f"  数据库 {database}：{len(tables)} 个集合，{sum(t.rows for t in tables):,} 个文档")
        lines += [f"    {t.collection:<28} {t.rows:>9,}" for t in sorted(tables, key=lambda t: t.collection or "")]
    total = f"共 {len(manifest.collections)} 个集合，{manifest.documents:,} 个文档"
    if size is not None:
        total += f"；文件 {size / 1e6:.1f} MB" if size >= 100_000 else f"；文件 {size / 1e3:.0f} KB"
    lines.append(f"  {total}")
    return lines


@store_app.command("backup")
def store_backup(file: BackupFile, as_json: AsJson = False) -> None:
    """备份内置存储：服务运行时也可以做，得到某一时刻的一致快照（pg_dump，一个文件：清单 + 转储）；
    写完后读回校验。没有运行的存储时，本命令启动它，做完后停止。"""
    import time

    from services.common.backup import BackupError, backup
    from services.common.settings import StoreSettings
    from services.common.storage import EmbeddedServer

    _embedded_only("backup")
    settings = StoreSettings()
    data_dir = _store_dir(None)
    target = file.resolve()
    if target.exists():
        fail(f"{target} 已存在：请换一个文件名，或先移走它 / {target} exists")
    began = time.monotonic()

    async def run() -> Manifest:
        server = EmbeddedServer(settings.ferretdb, data_dir, settings.embedded_start_timeout_s, settings.postgres_bin)
        try:
            endpoint = await server.open()  # joins the running store, or starts it for this command
            assert endpoint.postgres is not None
            return await asyncio.to_thread(backup, endpoint.postgres, _pg_bin(data_dir), target, data_dir)
        finally:
            await server.stop()

    try:
        manifest = asyncio.run(run())
    except (BackupError, OSError) as exc:  # OSError: writing the file, a full disk: said, not a traceback
        fail(f"备份失败：{exc}")
    if as_json:
        typer.echo(dump(manifest.to_json()))
        return
    typer.echo(f"已备份到 {target}（{time.monotonic() - began:.1f} 秒，已读回校验）")
    for line in _summary(manifest, target.stat().st_size):
        typer.echo(line)


@store_app.command("verify")
def store_verify(file: BackupFile, as_json: AsJson = False) -> None:
    """检查备份文件：清单可读，转储的 SHA-256 与清单一致，pg_restore 能读出目录和全部数据，
    每张表的行数和内容摘要与清单一致。不一致时逐项列出（exit 1）。"""
    from services.common.backup import BackupError, verify

    _embedded_only("verify")
    try:
        manifest = verify(file, _pg_bin(_store_dir(None)))
    except (BackupError, OSError) as exc:
        fail(f"备份文件 {file} 未通过检查：{exc}")
    if as_json:
        typer.echo(dump(manifest.to_json()))
        return
    typer.echo(f"备份文件 {file} 完好，内容与清单一致：")
    for line in _summary(manifest, file.stat().st_size):
        typer.echo(line)


@store_app.command("restore")
def store_restore(
        file: BackupFile,
        store_dir: Annotated[Path | None, typer.Option(
            "--store-dir", help="恢复到哪个内置存储数据目录（默认 ZEROERRAND_DATA_DIR/store，即服务使用的那个）")] = None,
        replace: Annotated[bool, typer.Option(
            "--replace", help="数据目录已有数据时替换它（原目录改名为 NAME.before-restore-时间 保留）")] = False,
) -> None:
    """从备份恢复内置存储：先检查备份文件，恢复到新目录并逐表核对行数与内容摘要，再放到位。
    必须先停止使用该存储的所有服务；已有数据的目录只有加 --replace 才替换（原目录保留在旁边）。"""
    from services.common.backup import BackupError, restore
    from services.common.settings import StoreSettings

    _embedded_only("restore")
    settings = StoreSettings()
    target = _store_dir(store_dir)
    postgres_bin = str(settings.postgres_bin) if settings.postgres_bin else None
    try:
        done = restore(file, target, settings.ferretdb, postgres_bin, replace=replace,
                       start_timeout_s=settings.embedded_start_timeout_s)
    except BackupError as exc:
        fail(f"恢复失败：{exc}")
    except OSError as exc:  # writing the file, a full disk: said, not a traceback
        fail(f"恢复失败：{exc}")
    typer.echo(f"已从 {file} 恢复到 {done.data_dir}（{done.seconds:.1f} 秒），每张表的行数与内容摘要都与备份清单一致：")
    for line in _summary(done.manifest):
        typer.echo(line)
    if done.previous is not None:
        typer.echo(f"原数据目录已改名保留为 {done.previous}：确认恢复无误后可删除它。")
