"""What the units and the enterprise do with a project's routed items, and on which days.

For each ledger line of a project, in the order its prerequisites allow, a seeded script of
requests as the responsible unit's system, 经发局, 政联公司 and the enterprise would send them: the
task order issued and accepted (专业跑腿), the enterprise contacted (usually within the 2-day
首问 limit, sometimes late), 受理, progress, now and then a 堵点 (reported by the unit, or by the
enterprise) and its resolution or a 中止 for 补正 and the resumption, completion (usually within
the statutory limit, about one in eight late), and the hand-over of the results. An item is
ready when its last prerequisite is handed over; its first step comes on a later working day.
Steps after the last simulated day are left out: those items are open at the end of the year.

At most one step per item per day, so the steps of one day can go to the ledger together (it
handles requests concurrently) and the next day's only after they are settled.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from services.common.domain import ECON_DEV_BUREAU, GOV_SERVICE_BUREAU, NEW_AREA_TIME, Request
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    AgreementSigned,
    Command,
    CompleteItem,
    ContactEnterprise,
    DeliverResults,
    IssueTaskOrder,
    RectifyAssessment,
    ReportBlocker,
    ReportEnterpriseIssue,
    ReportProgress,
    ResolveBlocker,
    ResumeItem,
    SubmitAssessment,
    SuspendItem,
    stable_id,
)
from services.demo.agreements import SURNAMES
from services.evaluation.ledger import Assessment, LedgerItem
from services.evaluation.scoring import EvaluationConfig
from services.evaluation.working_days import WorkingCalendar

ZHENGLIAN = "zhenglian_company"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超", "霞", "平")
_BLOCKERS = ("用地红线与规划条件不一致，需自然资源部门核实", "前置审批结果文号有误，需原审批部门更正",
             "水电接入方案需公用事业部门协调", "跨部门联审意见不一致，需牵头协调", "需上级部门补充会签")
_ENTERPRISE_ISSUES = ("多次补交材料后仍未受理，请尽快明确", "审批系统无法上传材料", "办理进度长时间未更新")
_SUPPLEMENTS = ("申请材料缺少法定代表人签字页，请企业补正", "设计文件需补充消防专篇", "环评报告需补充监测数据")


@dataclass(frozen=True)
class Step:
    """One request, sent on ``day``."""

    day: date
    command: Command


@dataclass
class ProjectScript:
    steps: list[Step] = field(default_factory=list)
    delivered: dict[str, date] = field(default_factory=dict)  # item code → hand-over day (handled lines)
    handed_over: int = 0  # lines (handled or advice-only) whose results are handed over in the year
    late: int = 0  # items completed after their statutory limit
    blocked: int = 0
    suspended: int = 0


def _moment(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, time(9 + rng.randrange(8), rng.randrange(60)), NEW_AREA_TIME).astimezone(UTC)


def operator_of(unit: str) -> str:
    """The person who works a unit's items in the demo: the same name for a unit every time."""
    rng = random.Random(unit)
    return rng.choice(SURNAMES) + rng.choice(_GIVEN) + rng.choice(("", *_GIVEN))


class _ItemScript:
    """The steps of one ledger line, one working day or more apart, none after ``end``."""

    def __init__(self, item: LedgerItem, start: date, end: date, calendar: WorkingCalendar, rng: random.Random,
                 steps: list[Step], credit_code: str) -> None:
        self.item, self.day, self.end, self.calendar, self.rng, self.steps = item, start, end, calendar, rng, steps
        self.credit_code = credit_code  # the enterprise: it sends no operator's name
        self.count = 0

    def after(self, low: int, high: int) -> bool:
        """Moves on ``low``..``high`` working days (at least one); False once past the last day."""
        self.day = self.calendar.add_working_days(self.day, max(1, self.rng.randint(low, high)))
        return self.day <= self.end

    def send(self, model: Callable[..., Command], by: str, **fields: Any) -> None:
        self.count += 1
        item = self.item
        moment = _moment(self.day, self.rng)
        self.steps.append(Step(self.day, model(
            request_id=stable_id(item.key, str(self.count), "demo"), requested_at=moment,
            occurred_at=moment, requested_by=by,
            operator=None if by == self.credit_code else operator_of(by), project_code=item.project_code,
            item_code=item.item_code, request=item.request,
            **fields)))


def script_project(agreement: AgreementSigned, items: Sequence[LedgerItem], end: date, calendar: WorkingCalendar,
                   config: EvaluationConfig, seed: int, unit_codes: Sequence[str]) -> ProjectScript:
    """The steps for every line of a project the ledger holds, each item after its prerequisites."""
    rng = random.Random(f"zeroerrand-demo/{seed}/{agreement.project.code}")
    script = ProjectScript()
    signed = agreement.signed_on
    lines = {i.item_code for i in items if i.request is Request.HANDLE}
    scripted: set[str] = set()
    remaining = sorted(items, key=lambda i: (i.request is Request.CONSULT, i.key))
    while remaining:
        ready_now = [i for i in remaining if all(c in scripted for c in i.requires if c in lines)]
        if not ready_now:
            break  # a cycle: the catalog check refuses them, so this does not happen
        for item in ready_now:
            remaining.remove(item)
            if item.request is Request.HANDLE:
                scripted.add(item.item_code)
            if any(c in lines and c not in script.delivered for c in item.requires):
                continue  # a prerequisite is not handed over this year: the item waits past its end
            ready = max([signed, *(script.delivered[c] for c in item.requires if c in script.delivered)])
            _script_item(item, ready, end, calendar, config, rng, script, agreement, unit_codes)
    script.steps.sort(key=lambda s: (s.day, s.command.occurred_at))
    return script


def _script_item(item: LedgerItem, ready: date, end: date, calendar: WorkingCalendar, config: EvaluationConfig,
                 rng: random.Random, script: ProjectScript, agreement: AgreementSigned, unit_codes: Sequence[str]) -> None:
    s = _ItemScript(item, ready, end, calendar, rng, script.steps, agreement.project.enterprise.credit_code)
    unit = item.responsible_unit
    if item.task_order_required:  # the 首问 clock of a 专业跑腿 item runs from the task order
        if not config.auto_issue_task_orders:
            if not s.after(1, 2):
                return
            s.send(IssueTaskOrder, ECON_DEV_BUREAU, note="请政联公司指定服务专员")
        if not s.after(1, 1):
            return
        s.send(AcceptTaskOrder, ZHENGLIAN, specialist_name=operator_of(f"{ZHENGLIAN}/{item.key}"),
               specialist_phone=f"138{rng.randrange(10**8):08d}")
        prompt = (1, 1)
    else:
        prompt = (1, config.service_response_days)
    late_contact = rng.random() < 0.15
    if not s.after(*((3, 7) if late_contact else prompt)):
        return
    s.send(ContactEnterprise, unit, note="已电话对接企业，一次性告知所需材料")
    if item.request is Request.CONSULT:
        if not s.after(1, 3):
            return
        s.send(CompleteItem, unit, note="已提供政策咨询")
        if s.after(1, 2):
            s.send(DeliverResults, unit, results=(f"{item.item_name}咨询意见",))
            script.handed_over += 1
        return
    if not s.after(1, 3):
        return
    s.send(AcceptItem, unit, note="材料齐全，予以受理")
    accepted = s.day
    late = rng.random() < 0.12
    share = rng.uniform(1.1, 1.7) if late else rng.uniform(0.3, 0.9)
    due = calendar.add_working_days(accepted, max(1, round(item.time_limit_days * share)))
    # what happens in between, when the limit leaves room for it (a suspension stops the clock)
    room = late or calendar.working_days_between(accepted, due) >= 6
    if room and rng.random() < 0.5:
        if not s.after(1, 2):
            return
        s.send(ReportProgress, unit, note="材料已转审批科室，正在审查")
    roll = rng.random()
    if room and roll < 0.10:
        resolver = item.approving_authority if item.approving_authority != unit else rng.choice(
            [u for u in (GOV_SERVICE_BUREAU, ECON_DEV_BUREAU) if u != unit])
        if resolver not in unit_codes or not s.after(1, 2):
            return
        s.send(ReportBlocker, unit, reason=rng.choice(_BLOCKERS), resolver=resolver)
        script.blocked += 1
        if not s.after(1, 3):
            return
        s.send(ResolveBlocker, resolver, note="已协调解决")
    elif room and roll < 0.13:
        if not s.after(1, 2):
            return
        s.send(ReportEnterpriseIssue, agreement.project.enterprise.credit_code, reason=rng.choice(_ENTERPRISE_ISSUES))
        script.blocked += 1
        if not s.after(1, 2):
            return
        s.send(ResolveBlocker, unit, note="已向企业说明并加快办理")
    elif roll < 0.21:
        if not s.after(1, 2):
            return
        s.send(SuspendItem, unit, reason=rng.choice(_SUPPLEMENTS))
        script.suspended += 1
        paused = s.day
        if not s.after(3, 10):
            return
        s.send(ResumeItem, unit, note="企业已补正")
        due = calendar.add_working_days(due, calendar.working_days_between(paused, s.day))
    if s.day < due:
        s.day = due
        if s.day > end:
            return
    elif not s.after(1, 2):
        return
    s.send(CompleteItem, unit, note="审批办结")
    if late:
        script.late += 1
    if s.after(1, 2):
        s.send(DeliverResults, unit, results=(f"{item.item_name}批复文件（和新审〔{s.day.year}〕{rng.randrange(1, 999)}号）",))
        script.delivered[item.item_code] = s.day
        script.handed_over += 1


def assessments_for(project: AgreementSigned, items: Sequence[LedgerItem], year: int, day: date,
                    config: EvaluationConfig, seed: int) -> list[SubmitAssessment]:
    """The 测评 of ``year`` for one project: most enterprises and recruiting units rate each unit that
    served them in the year, mostly well, now and then badly (below the 差评 line)."""
    rng = random.Random(f"zeroerrand-demo/{seed}/{project.project.code}/assessments")
    providers = sorted({i.responsible_unit for i in items
                        if i.ready_on is not None and i.ready_on.year <= year
                        and (i.finished_on is None or i.finished_on.year >= year)})
    found = []
    for provider in providers:
        quality = 0.92 - 0.12 * random.Random(f"{seed}/{provider}").random()  # each unit has its level
        raters = [("enterprise", project.project.enterprise.credit_code, 0.85),
                  ("recruiting_unit", project.project.recruiting_unit, 0.7)]
        for rater, by, chance in raters:
            if by == provider or rng.random() >= chance:
                continue
            level = rng.uniform(0.3, 0.55) if rng.random() < 0.05 else min(1.0, rng.gauss(quality, 0.06))
            scores = {q.code: round(max(0.0, min(float(q.points), q.points * level)), 1) for q in config.questionnaire}
            moment = _moment(day, rng)
            found.append(SubmitAssessment(
                request_id=stable_id(project.project.code, provider, rater, str(year), "demo-assessment"),
                requested_at=moment, occurred_at=moment, requested_by=by, project_code=project.project.code,
                provider=provider, rater=rater, year=year, scores=scores,
                operator=None if rater == "enterprise" else operator_of(by),
                comment=None if level >= 0.6 else "对接不及时，办理进度不透明"))
    return found


def rectifications_for(bad: Sequence[Assessment], day: date, seed: int) -> list[RectifyAssessment]:
    """Most units rectify a 差评 in time; some do not (the report lists them)."""
    found = []
    for assessment in bad:
        rng = random.Random(f"zeroerrand-demo/{seed}/{assessment.assessment_id}/rectify")
        if rng.random() < 0.75:
            moment = _moment(day, rng)
            found.append(RectifyAssessment(
                request_id=stable_id(assessment.assessment_id, "demo-rectification"), requested_at=moment,
                occurred_at=moment, requested_by=assessment.provider, operator=operator_of(assessment.provider),
                assessment_id=assessment.assessment_id, note="已约谈企业、优化对接流程并指定专人跟踪"))
    return found
