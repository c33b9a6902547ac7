"""``assess``, ``rectify`` and ``report``: the 综合测评 and the annual evaluation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from services.cli._common import At, Operator, Project, Wait, book, day, fail, fail_problems, on_ledger, submit, when


def assess(project: Project, provider: Annotated[str, typer.Option(help="被测评的服务单位（单位编码）")],
           rater: Annotated[str, typer.Option(help="评价人类别：enterprise（服务对象）或 recruiting_unit（项目招引单位）")],
           by: Annotated[str, typer.Option("--by", help="提交人：企业的统一社会信用代码，或招引单位编码")],
           score: Annotated[list[str], typer.Option(help="指标得分 指标编码=分数，每个指标一次（见 evaluation.yaml）")],
           year: Annotated[int | None, typer.Option(help="测评年度（默认今年）")] = None,
           comment: Annotated[str | None, typer.Option(help="评价意见")] = None,
           operator: Operator = None, at: At = None, wait: Wait = 15) -> None:
    """提交综合测评（方案五(六)）：按问卷逐项打分；低于差评线的须由服务单位限期整改。"""
    from services.common.messages import SubmitAssessment
    from services.evaluation.ledger import local_day

    if rater not in ("enterprise", "recruiting_unit"):
        fail("--rater 只能是 enterprise 或 recruiting_unit")
    scores: dict[str, float] = {}
    for pair in score:
        code, sep, text = pair.partition("=")
        try:
            scores[code] = float(text)
        except ValueError:
            sep = ""
        if not sep:
            fail(f"--score 需写成 指标编码=分数，而不是 {pair!r}")
    moment = when(at)
    command = submit(SubmitAssessment, wait, f"对 {provider} 的测评（{project}）", project_code=project,
                     provider=provider, rater=rater, requested_by=by, operator=operator, occurred_at=moment,
                     year=year or local_day(moment).year, scores=scores, comment=comment)
    typer.echo(f"测评编号 {command.request_id}")
    if wait > 0:
        stored = asyncio.run(on_ledger(lambda repo: repo.assessment(command.request_id)))
        if stored is not None and stored.bad:
            typer.echo(f"测评总分 {stored.total:g}，低于差评线：{provider} 须于 {stored.rectify_by} 前整改"
                       f"（zeroerrand rectify {command.request_id} --by {provider} --note ...）")
        elif stored is not None:
            typer.echo(f"测评总分 {stored.total:g}")


def rectify(assessment_id: Annotated[str, typer.Argument(help="差评的测评编号（assess 命令输出的测评编号）")],
            by: Annotated[str, typer.Option("--by", help="整改的服务单位（单位编码）")],
            note: Annotated[str, typer.Option(help="整改说明")], operator: Operator = None, at: At = None,
            wait: Wait = 15) -> None:
    """服务单位提交差评整改说明，关闭整改事项。"""
    from services.common.messages import RectifyAssessment

    submit(RectifyAssessment, wait, f"测评 {assessment_id} 的整改说明", assessment_id=assessment_id, requested_by=by,
           operator=operator, note=note, occurred_at=when(at))


def report(year: Annotated[int, typer.Option(help="评价年度")],
           evaluator: Annotated[str | None, typer.Option(
               help="评价单位：gov_service_bureau（帮办代办、联审联批）或 econ_dev_bureau（专业跑腿）；默认全部")] = None,
           out: Annotated[Path | None, typer.Option(help="报告目录（默认 reports/<年度>[-<评价单位>]）")] = None,
           today: Annotated[str | None, typer.Option(help="按哪一天判断未办结事项是否超时（默认今天）")] = None) -> None:
    """年度综合评价：每个服务单位、每种服务方式的综合测评得分（70 分合格）、未评价单位、退出/整改名单、
    评价意见，台账数据作参考；图表（HTML）与 CSV。"""
    from datetime import UTC, datetime

    from services.common.settings import EvaluationSettings
    from services.common.yaml_files import RulesError
    from services.evaluation.holiday_file import load_calendar
    from services.evaluation.ledger import local_day
    from services.evaluation.report import summary_table, write_report
    from services.evaluation.scoring import evaluate_year, load_config

    if evaluator not in (None, "gov_service_bureau", "econ_dev_bureau"):
        fail("--evaluator 只能是 gov_service_bureau 或 econ_dev_bureau（政策五(六)）")
    units = book(None).units
    try:
        config = load_config(EvaluationSettings().rules_dir)
        calendar = load_calendar(EvaluationSettings().rules_dir)
    except RulesError as exc:
        fail_problems("评价规则文件", exc)
    now = datetime.now(UTC)
    on = day(today) if today else local_day(now)
    result = asyncio.run(on_ledger(lambda repo: evaluate_year(repo, year, config, units, calendar, on, now,
                                                              evaluator=evaluator)))
    directory = out or Path("reports") / (f"{year}-{evaluator}" if evaluator else str(year))
    written = write_report(result, directory)
    typer.echo(summary_table(result))
    typer.echo("报告文件：" + "、".join(str(p) for p in written))
