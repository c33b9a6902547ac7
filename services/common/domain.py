"""The zero-errand domain: stages, service modes, units, catalog items, routing decisions.

Pure data and rules of the policy (《内蒙古和林格尔新区优化招商引资“企业零跑腿”服务工作方案》: stages 二(二),
modes 四, evaluation 五(六)); no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

NEW_AREA_TIME = ZoneInfo("Asia/Shanghai")
"""The New Area's time: days (signing, ready, due dates) are its days, and what people read is in it."""

# -- bounds every message and rule file shares: dates in a sane window, strings of bounded length ---

YEAR_MIN, YEAR_MAX = 2000, 2100
_When = TypeVar("_When", date, datetime)


def in_year_window(value: _When) -> _When:
    """A date or time of the years 2000–2100: what any record of the service can be about."""
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        raise ValueError(f"日期须在 {YEAR_MIN} 至 {YEAR_MAX} 年之间，而不是 {value.isoformat()} / "
                         f"outside the years {YEAR_MIN}-{YEAR_MAX}")
    return value


# controls (C0, DEL, C1) and the bidirectional overrides that make text read other than it is stored;
# on one line, also line breaks, including Unicode's line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAK_OR_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def check_one_line(value: str) -> str:
    if found := _LINE_BREAK_OR_CONTROL.search(value):
        raise ValueError(f"不能含换行或控制字符（第 {found.start() + 1} 个字符是 {found.group()!r}）/ control character")
    return value


def _no_control(value: str) -> str:
    if found := _CONTROL.search(value):
        raise ValueError(f"不能含控制字符（第 {found.start() + 1} 个字符是 {found.group()!r}）/ control character")
    return value


Day = Annotated[date, AfterValidator(in_year_window)]
"""A calendar day of the years 2000–2100."""
Moment = Annotated[AwareDatetime, AfterValidator(in_year_window)]
"""A point in time with its offset, in the years 2000–2100."""
Code = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_one_line)]
"""A unit, item, project or indicator code, a request type: one line, at most 64 characters."""
Ident = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_one_line)]
"""An id (event, request, agreement, item, assessment), a version, a task order number."""
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_one_line)]
"""What a person reads as a name: a project, an enterprise, a unit, an item, a contact."""
Line = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_one_line)]
"""One entry of a list: a material, a fact's text value."""
Result = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(check_one_line)]
"""One approval result handed over (a licence and its number, where to collect it): at most 500
characters, as units' systems have sent since the ledger first took deliveries."""
Text = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_no_control)]
"""Free text: a note, a reason, a comment (line breaks allowed, at most 2,000 characters)."""


def _no_credentials(url: str) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", url, flags=re.IGNORECASE):
        raise ValueError("Webhook 地址不能含用户名或密码（它会随事项和通知记录传给各单位；请求由 HMAC 签名认证）"
                         " / no user or password in a webhook URL")
    return url


WebhookUrl = Annotated[str, Field(max_length=2000, pattern=r"^https?://[\x21-\x7e]+$"), AfterValidator(_no_credentials)]
"""An http(s) webhook address: printable ASCII, no credentials in it (the receiver checks the
request's HMAC signature instead; a password in the URL would travel with every routed item)."""


_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+$")
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")  # ASCII digits: \d would take any script's


def is_email_address(value: str) -> bool:
    """An address mail can be sent to: ``local@domain.tld``, ASCII, at most 254 characters."""
    return len(value) <= 254 and _EMAIL.match(value) is not None


def mainland_mobile(value: str) -> str | None:
    """A mainland China mobile number as 11 digits (``13900000000``) if ``value`` is one, written
    with spaces or dashes or a ``+86``/``86`` prefix, in full-width digits as Chinese input methods
    type them too (stored as ASCII); else None (a landline, an extension, other scripts' digits)."""
    digits = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", value))
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if _MOBILE.match(digits) else None


def _email_address(value: str) -> str:
    if not is_email_address(value):
        raise ValueError(f"不是有效的电子邮件地址（应形如 someone@example.cn）：{value!r} / not an e-mail address")
    return value


def _mobile_number(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):  # {sms: 13900000000} without quotes in YAML
        value = str(value)
    if not isinstance(value, str):
        return value  # the str type says what is wrong
    number = mainland_mobile(value)
    if number is None:
        raise ValueError(f"不是中国大陆手机号（11 位数字，以 13–19 开头，如 \"13900000000\"）：{value!r} / not a mobile number")
    return number


EmailAddress = Annotated[str, AfterValidator(_email_address)]
"""An e-mail address (``someone@example.cn``)."""
MobileNumber = Annotated[str, BeforeValidator(_mobile_number)]
"""A mainland China mobile number, kept as its 11 digits (spaces, dashes, +86 accepted on input)."""

class Stage(StrEnum):
    """The six approval stages of policy section 二(二)."""

    MARKET_ACCESS = "market_access"
    LAND_TRANSFER = "land_transfer"
    PROJECT_LAND_PLANNING = "project_land_planning"
    ENGINEERING_PERMIT = "engineering_permit"
    CONSTRUCTION_PERMIT = "construction_permit"
    COMPLETION_ACCEPTANCE = "completion_acceptance"


STAGE_NAMES_ZH: dict[Stage, str] = {
    Stage.MARKET_ACCESS: "市场准入",
    Stage.LAND_TRANSFER: "土地使用权出让",
    Stage.PROJECT_LAND_PLANNING: "立项用地规划许可",
    Stage.ENGINEERING_PERMIT: "工程建设许可",
    Stage.CONSTRUCTION_PERMIT: "施工许可",
    Stage.COMPLETION_ACCEPTANCE: "竣工验收",
}


class ServiceMode(StrEnum):
    """How an approval item is served (policy section 四)."""

    ASSIST = "assist"
    JOINT = "joint"
    ERRAND = "errand"
    CONSULT = "consult"


MODE_NAMES_ZH: dict[ServiceMode, str] = {
    ServiceMode.ASSIST: "帮办代办",
    ServiceMode.JOINT: "联审联批",
    ServiceMode.ERRAND: "专业跑腿",
    ServiceMode.CONSULT: "咨询服务",
}


class Jurisdiction(StrEnum):
    """Where an approving authority sits relative to the New Area."""

    DISTRICT = "district"
    DISPATCHED = "dispatched"
    OUTSIDE = "outside"


class UnitKind(StrEnum):
    DEPARTMENT = "department"
    DISPATCHED_AGENCY = "dispatched_agency"
    OUTSIDE_AUTHORITY = "outside_authority"
    SERVICE_COMPANY = "service_company"


class Request(StrEnum):
    """What the enterprise asked for an item: to have it handled, or advice only."""

    HANDLE = "handle"
    CONSULT = "consult"


GOV_SERVICE_BUREAU = "gov_service_bureau"
ECON_DEV_BUREAU = "econ_dev_bureau"

# Policy 五(六): 政务服务局 evaluates 帮办代办 and 联审联批, 经济发展招商服务局 evaluates 专业跑腿.
EVALUATOR_BY_MODE: dict[ServiceMode, str] = {
    ServiceMode.ASSIST: GOV_SERVICE_BUREAU,
    ServiceMode.JOINT: GOV_SERVICE_BUREAU,
    ServiceMode.ERRAND: ECON_DEV_BUREAU,
}

# The levels of an overdue item, in order (policy 五(四) 跟踪调度), and what people call them.
OVERDUE_LEVEL_NAMES_ZH: dict[str, str] = {"warning": "预警", "yellow": "黄牌", "red": "红牌"}

# What people call each request to the ledger (the request types of ``messages.py``).
REQUEST_NAMES_ZH: dict[str, str] = {
    "item.contact": "对接企业", "item.accept": "受理", "item.report_progress": "报告进度", "item.report_blocker": "报告堵点/卡点",
    "item.enterprise_issue": "反映堵点/卡点", "item.resolve_blocker": "解除堵点/卡点", "item.suspend": "中止办理",
    "item.resume": "恢复办理", "item.complete": "办结",
    "item.deliver": "移交结果", "task_order.issue": "下发任务单", "task_order.accept": "接收任务单",
    "item.reroute": "重新分派",
    "assessment.submit": "提交测评", "assessment.rectify": "提交整改说明",
}

FREE_SERVICE_NOTE = "“企业零跑腿”服务全程免费"


def estimated_note(years: Sequence[int]) -> str:
    """What is shown beside a working-day figure or due day estimated on Monday–Friday for years whose
    holidays are not known: ``2027 年节假日未录入，按周一至周五估算`` ("" for none)."""
    return "、".join(str(y) for y in years) + " 年节假日未录入，按周一至周五估算" if years else ""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Unit(_Frozen):
    """A department, dispatched agency, outside authority or service company. ``recruits``: it may be
    a project's 招引单位 (policy 三(二), 五(二): a New Area unit that brings projects in, plans their
    approvals and tracks them); an agreement naming any other unit as 招引单位 is refused."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    name: Name
    short_name: Name
    kind: UnitKind
    jurisdiction: Jurisdiction
    recruits: bool = False


class Fee(_Frozen):
    """A fee the law requires the enterprise to pay (the service itself is free)."""

    name: Name
    basis: Text


class ItemBasis(_Frozen):
    """Where an item's time limit and approving authority come from (law, regulation, guide)."""

    time_limit: str = Field(min_length=1, description="依据：the source of the time limit")
    owner: str = Field(min_length=1, description="依据：the source of the approving authority")


class StatutoryLimit(_Frozen):
    """The time limit the law sets for deciding (法定时限), as the law counts it: working days
    (工作日, e.g. 《行政许可法》第四十二条) or days (日, calendar days, e.g. 《排污许可管理条例》)."""

    days: int = Field(gt=0, le=730)
    unit: Literal["working_days", "days"]

    def text(self) -> str:
        return f"法定 {self.days} 个工作日" if self.unit == "working_days" else f"法定 {self.days} 日"

    def admits(self, promised_working_days: int) -> bool:
        """Whether a promise of that many working days ends within the law's limit whatever weekday
        the item is accepted on: N working days from an acceptance span up to ``span_days(N)``
        calendar days (accepted on a Friday), more across a holiday, which the promise itself
        must leave room for."""
        if self.unit == "working_days":
            return promised_working_days <= self.days
        return span_days(promised_working_days) <= self.days


def span_days(working_days: int) -> int:
    """The most calendar days that many working days, counted from the day after an acceptance on a
    working day, can take (a week of five, no holidays): the acceptance on a Friday."""
    longest = 0
    for accepted in range(5):  # Monday to Friday
        day, left = accepted, working_days
        while left:
            day += 1
            left -= day % 7 < 5
        longest = max(longest, day - accepted)
    return longest


PREVIOUS_STAGE = "previous_stage"


class CatalogItem(_Frozen):
    """One approval item of the 服务事项清单.

    ``requires`` says what the item waits for: catalog codes whose results it needs (only those
    planned for the same project count), or ``previous_stage``: every planned item of the nearest
    earlier stage that has planned items. Items of one stage with nothing between them run in
    parallel (并联审批).
    """

    code: str = Field(pattern=r"^[A-Z]{2}-\d{2}$")
    name: Name
    stage: Stage
    owner: Code
    jurisdiction: Jurisdiction
    time_limit_days: int = Field(gt=0, le=365, description="承诺时限: the New Area's promise, in working days; "
                                                         "the ledger's clock from 受理 runs it")
    statutory_limit: StatutoryLimit | None = Field(default=None, description="法定时限; None: the law sets none")
    materials: tuple[Line, ...] = Field(min_length=1, max_length=100)
    fees: tuple[Fee, ...] = Field(default=(), max_length=20)
    requires: tuple[str, ...] | Literal["previous_stage"] = ()
    basis: ItemBasis
    to_confirm: Text | None = Field(default=None, description="what is not yet confirmed, for the policy office")
    note: Text | None = None

    @model_validator(mode="after")
    def _promise_within_the_law(self) -> CatalogItem:
        limit = self.statutory_limit
        if limit is not None and not limit.admits(self.time_limit_days):
            span = "" if limit.unit == "working_days" else f"（{self.time_limit_days} 个工作日自受理起最长跨 " \
                                                           f"{span_days(self.time_limit_days)} 天）"
            raise ValueError(f"承诺时限 time_limit_days {self.time_limit_days} 个工作日{span}长于{limit.text()}："
                             "承诺不能超过法律规定的期限 / the promised limit exceeds the statutory one")
        return self

    def limits_text(self) -> str:
        """Which limits the item has, as people read them: "承诺 5 个工作日（法定 20 个工作日）"."""
        law = self.statutory_limit.text() if self.statutory_limit else "法律法规未规定办理时限"
        return f"承诺 {self.time_limit_days} 个工作日（{law}）"

    def fee_note(self) -> str:
        """The free-service statement the enterprise reads, naming any legally required fee."""
        if not self.fees:
            return f"{FREE_SERVICE_NOTE}，本事项无需企业缴纳任何费用。"
        fees = "；".join(f"{fee.name}（依据{fee.basis}）" for fee in self.fees)
        return f"{FREE_SERVICE_NOTE}；以下费用由法律法规规定由企业承担，非服务收费：{fees}。"


class RetiredItem(_Frozen):
    """A catalog code that is no longer used; it is never reused for another item."""

    code: str = Field(pattern=r"^[A-Z]{2}-\d{2}$")
    name: Name
    reason: Text
    replaced_by: Code | None = None


class Decision(_Frozen):
    """Why an item went where it went: the record that travels with the item and its event."""

    mode: ServiceMode
    responsible_unit: Code
    approving_authority: Code
    evaluated_as: ServiceMode
    evaluator: Code
    routing_key: Ident
    rule_id: Code
    rule_name: Name
    rules_version: Ident
    facts: dict[Ident, Any] = Field(max_length=100, description="the facts the rules tested (project.<fact>, item.<field>)")
    task_order: bool
    decided_at: Moment


class Unroutable(_Frozen):
    """An item no rule can place, with a specific reason (never a guess)."""

    reason_code: Code
    reason: Text
    rules_version: Ident
    facts: dict[Ident, Any] = Field(max_length=100, description="the facts the rules tested (project.<fact>, item.<field>)")
    decided_at: Moment
