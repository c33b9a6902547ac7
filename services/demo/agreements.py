"""A year of investment agreements, made up from the catalog with a seeded generator.

Three kinds of project, as the New Area signs them: general industry (every stage, energy use
around the thresholds of the energy review), computing centres (heavy electricity use) and trade
and logistics (fewer items, little energy, so their energy review is often not required). Plans
leave out items at random, some add advice-only (咨询) lines, and the signing days are spread over
the working days of the year. The same seed, year and count always make the same agreements.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from services.common.domain import NEW_AREA_TIME, Request, Stage
from services.common.messages import AgreementSigned, Contact, Eligibility, Enterprise, PlannedItem, Project, stable_id
from services.common.rule_files import RuleBook
from services.evaluation.working_days import WorkingCalendar

RECRUITING_UNITS = (("econ_dev_bureau", 0.7), ("planning_construction_bureau", 0.15), ("public_utilities_bureau", 0.15))
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马胡朱郭何高林罗"  # also the demo's staff names (simulation)
_GIVEN = ("海涛", "玉兰", "建国", "晓东", "丽娜", "志强", "秀英", "文博", "婷", "磊", "敏", "俊杰", "雪梅", "宏伟", "春燕")
_PLACES = ("绿能", "草原", "北疆", "云谷", "和林", "敕勒", "金桥", "青城", "蒙西", "黄河", "大青山", "盛乐")
# 统一社会信用代码: the alphabet of its last ten characters (no I, O, S, V, Z)
_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@dataclass(frozen=True)
class _Kind:
    name: str
    share: float
    products: tuple[str, ...]
    industry: str
    keep: float  # each optional item is planned with this chance
    energy_median_tce: float
    electricity_per_tce: float  # 万千瓦时 per tonne of standard coal
    stages: tuple[Stage, ...] = tuple(Stage)


KINDS = (
    _Kind("industry", 0.5, ("光伏组件铝边框", "新能源电池正极材料", "乳制品深加工", "高纯硅材料", "生物发酵制品"),
          "制造业", 0.85, 3000, 0.6),
    _Kind("computing", 0.15, ("智算中心", "云计算数据中心", "算力调度平台"), "数据中心", 0.8, 20000, 2.5),
    _Kind("logistics", 0.35, ("冷链物流园", "商贸综合体", "跨境电商仓储中心", "汽车销售服务中心"),
          "商贸物流", 0.7, 300, 0.8),
)
# every project plans these (company registration, land, planning permit, construction permit, acceptance)
CORE = frozenset({"MA-01", "LT-01", "LT-02", "PL-01", "PL-05", "EP-02", "CP-01", "CA-03"})
APPROVAL_SHARE = 0.2  # the projects that need 核准 (PL-02) instead of 备案 (PL-01)


def working_days_of(year: int, end: date, calendar: WorkingCalendar) -> list[date]:
    """The working days of ``year`` up to ``end``."""
    days = []
    day = date(year, 1, 1)
    while day <= end and day.year == year:
        if calendar.is_workday(day):
            days.append(day)
        day = date.fromordinal(day.toordinal() + 1)
    return days


def _credit_code(rng: random.Random) -> str:
    return "91150100" + "MA" + "".join(rng.choice(_CREDIT_ALPHABET) for _ in range(8))


def _pick_kind(rng: random.Random) -> _Kind:
    return rng.choices(KINDS, weights=[k.share for k in KINDS])[0]


def _plan(book: RuleBook, kind: _Kind, energy: float, electricity: float, rng: random.Random) -> list[PlannedItem]:
    ordered = sorted(book.catalog.values(), key=lambda i: (list(Stage).index(i.stage), i.code))
    handled = [i.code for i in ordered if i.stage in kind.stages and (i.code in CORE or rng.random() < kind.keep)]
    # a project is either filed (备案, PL-01) or approved (核准, PL-02: only the kinds the 政府核准的投资项目目录
    # lists), never both (《企业投资项目核准和备案管理条例》第三条)
    approved = rng.random() < APPROVAL_SHARE
    dropped, needed = ("PL-01", "PL-02") if approved else ("PL-02", "PL-01")
    if dropped in handled:
        handled.remove(dropped)
    if needed not in handled and any(book.catalog[code].stage is Stage.PROJECT_LAND_PLANNING for code in handled):
        handled.append(needed)
        handled.sort(key=lambda code: (list(Stage).index(book.catalog[code].stage), code))
    if "PL-03" in handled and energy < 1000 and electricity < 500 and rng.random() < 0.6:
        handled.remove("PL-03")  # most planners know the energy review is not required; some plan it anyway
    plan = [PlannedItem(item=code) for code in handled]
    for code in rng.sample(handled, k=min(len(handled), rng.choice((0, 0, 0, 1, 2)))):
        if code not in CORE:
            plan.append(PlannedItem(item=code, request=Request.CONSULT, note="企业自行办理，仅需政策咨询"))
    return plan


def year_of_agreements(book: RuleBook, year: int, projects: int, seed: int, signing_days: list[date]) -> list[AgreementSigned]:
    """``projects`` back-filled agreements (补录) signed on ``signing_days`` (sorted, chosen at random
    with repetition), in signing order; codes ``DEMO{seed}-{year}-NNN``."""
    rng = random.Random(f"zeroerrand-demo/{seed}/{year}")
    days = sorted(rng.choice(signing_days) for _ in range(projects))
    agreements = []
    for n, signed in enumerate(days, start=1):
        kind = _pick_kind(rng)
        energy = round(min(80000.0, max(20.0, kind.energy_median_tce * math.exp(rng.gauss(0, 0.9)))), 1)
        electricity = round(energy * kind.electricity_per_tce * math.exp(rng.gauss(0, 0.3)), 1)
        product = rng.choice(kind.products)
        place = rng.choice(_PLACES)
        code = f"DEMO{seed}-{year}-{n:03d}"
        capacity = rng.choice((1, 2, 3, 5, 10, 20, 50))
        name = f"年产{capacity}万吨{product}项目" if kind.name == "industry" else f"{place}{product}项目"
        contact = rng.choice(SURNAMES) + rng.choice(_GIVEN)
        project = Project(
            code=code, name=name,
            enterprise=Enterprise(name=f"内蒙古{place}{kind.industry}{''.join(rng.choices(string.digits, k=2))}号有限公司",
                                  credit_code=_credit_code(rng),
                                  contact=Contact(name=contact, phone=f"139{rng.randrange(10**8):08d}")),
            recruiting_unit=rng.choices([u for u, _ in RECRUITING_UNITS], weights=[w for _, w in RECRUITING_UNITS])[0],
            facts={"annual_energy_tce": energy, "annual_electricity_10k_kwh": electricity,
                   "industry": kind.industry, "investment_cny": rng.randrange(50, 3000) * 1_000_000},
        )
        moment = datetime.combine(signed, time(10, rng.randrange(60)), NEW_AREA_TIME).astimezone(UTC)
        agreement_id = f"DEMO{seed}-XY-{year}-{n:03d}"
        agreements.append(AgreementSigned(
            event_id=stable_id(agreement_id, "agreement.signed"), occurred_at=moment, recorded_at=moment,
            agreement_id=agreement_id, signed_on=signed, project=project,
            eligibility=Eligibility(zero_errand_clause=True, enterprise_consent=True),
            plan=tuple(_plan(book, kind, energy, electricity, rng)), backfill=True,
        ))
    return agreements
