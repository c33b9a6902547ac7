"""``item ...`` and ``task-order ...``: a unit without a system of its own reports an item's progress
to the ledger (one request each, waiting for its outcome)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from services.cli._common import At, Operator, Project, Wait, submit, when

item_app = typer.Typer(help="为没有自建系统的单位向台账提交事项进度请求 / report an item's progress.", no_args_is_help=True)
task_order_app = typer.Typer(help="专业跑腿服务任务单 / task orders.", no_args_is_help=True)

Item = Annotated[str, typer.Argument(help="事项编码，如 EP-03")]
By = Annotated[str, typer.Option("--by", help="提交请求的单位编码（首问负责：须为该事项的承办单位）")]
Consult = Annotated[bool, typer.Option("--consult", help="指“仅咨询”那一条（同一事项既办理又咨询时）")]


def _item_request(kind: str, project: str, item: str, by: str, operator: str | None, consult: bool, at: str | None,
                  wait: float, **fields: Any) -> None:
    from services.common import messages as m
    from services.common.domain import REQUEST_NAMES_ZH, Request

    models: dict[str, type[m.ItemCommand]] = {
             "contact": m.ContactEnterprise, "accept": m.AcceptItem, "progress": m.ReportProgress,
             "block": m.ReportBlocker, "report_issue": m.ReportEnterpriseIssue,
             "unblock": m.ResolveBlocker, "suspend": m.SuspendItem, "resume": m.ResumeItem,
             "complete": m.CompleteItem, "deliver": m.DeliverResults, "issue": m.IssueTaskOrder,
             "accept_order": m.AcceptTaskOrder}
    model = models[kind]
    action = REQUEST_NAMES_ZH[str(model.model_fields["type"].default)]
    submit(model, wait, f"“{action}”请求：{project}/{item}（{by}）", project_code=project,
           item_code=item, requested_by=by, operator=operator, occurred_at=when(at),
           request=Request.CONSULT if consult else None, **fields)


@item_app.command("contact")
def item_contact(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                 at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None,
                 specialist: Annotated[str | None, typer.Option(
                     help="帮办代办服务专员姓名（政务服务局对接“帮办代办”事项时指定，方案四(一)；须同时给 --phone）")] = None,
                 phone: Annotated[str | None, typer.Option(help="服务专员的中国大陆手机号（11 位）")] = None) -> None:
    """首问负责：已对接企业（停止首问响应计时）；帮办代办事项同时指定服务专员。"""
    _item_request("contact", project, item, by, operator, consult, at, wait, note=note, specialist_name=specialist,
                  specialist_phone=phone)


@item_app.command("accept")
def item_accept(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """受理事项（开始按承诺时限计时）。"""
    _item_request("accept", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("progress")
def item_progress(project: Project, item: Item, by: By, note: Annotated[str, typer.Option(help="进展情况")],
                  operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """报告办理进度。"""
    _item_request("progress", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("block")
def item_block(project: Project, item: Item, by: By, reason: Annotated[str, typer.Option(help="堵点/卡点成因")],
               resolver: Annotated[str, typer.Option(help="须由哪个单位解决（单位编码）")],
               operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """报告堵点/卡点：原因与须由谁解决。"""
    _item_request("block", project, item, by, operator, consult, at, wait, reason=reason, resolver=resolver)


@item_app.command("report-issue")
def item_report_issue(project: Project, item: Item,
                      by: Annotated[str, typer.Option("--by", help="服务对象企业的统一社会信用代码（18 位）")],
                      reason: Annotated[str, typer.Option(help="企业反映的堵点/卡点")],
                      operator: Annotated[str | None, typer.Option(
                          "--operator", help="代企业录入的工作人员姓名（记入台账）")] = None,
                      consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """企业反映堵点/卡点（方案四(二)）：代企业录入其电话等方式反映的问题，由承办单位解决（item unblock）。"""
    _item_request("report_issue", project, item, by, operator, consult, at, wait, reason=reason)


@item_app.command("unblock")
def item_unblock(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                 at: At = None, wait: Wait = 15,
                 note: Annotated[str | None, typer.Option(help="如何解决的")] = None) -> None:
    """解除堵点/卡点（承办单位或须解决的单位）。"""
    _item_request("unblock", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("suspend")
def item_suspend(project: Project, item: Item, by: By, reason: Annotated[str, typer.Option(help="等待企业补正的内容")],
                 operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """中止办理，等待企业补正材料（计时暂停）。"""
    _item_request("suspend", project, item, by, operator, consult, at, wait, reason=reason)


@item_app.command("resume")
def item_resume(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """企业补正后恢复办理（继续计时）。"""
    _item_request("resume", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("complete")
def item_complete(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                  at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """办结事项。"""
    _item_request("complete", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("deliver")
def item_deliver(project: Project, item: Item, by: By,
                 result: Annotated[list[str], typer.Option(help="移交的审批结果（可重复），如证照名称及文号")],
                 operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15,
                 note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """向企业一次性完整移交审批结果。"""
    _item_request("deliver", project, item, by, operator, consult, at, wait, results=tuple(result), note=note)


@task_order_app.command("issue")
def task_order_issue(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                     at: At = None, wait: Wait = 15,
                     note: Annotated[str | None, typer.Option(help="任务要求")] = None) -> None:
    """经济发展招商服务局下发“专业跑腿”服务任务单（事项具备办理条件后）。"""
    _item_request("issue", project, item, by, operator, consult, at, wait, note=note)


@task_order_app.command("accept")
def task_order_accept(project: Project, item: Item, by: By,
                      specialist: Annotated[str, typer.Option(help="服务专员姓名")],
                      phone: Annotated[str, typer.Option(help="服务专员的中国大陆手机号（11 位），会告知企业")],
                      operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """政联公司接收任务单并指定服务专员。"""
    _item_request("accept_order", project, item, by, operator, consult, at, wait, specialist_name=specialist,
                  specialist_phone=phone)
