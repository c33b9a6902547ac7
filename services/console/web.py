"""The console's pages (服务台): server-rendered, in Chinese, no JavaScript.

Every page reads through the services' view functions (``services.evaluation.views``, the
notifier's and the accounts' repositories) and every change goes out as the same request the
CLI publishes, so the ledger decides (首问负责, states, dates) exactly as for a unit's own system.
Each handler asks for the role and unit it needs; the requesting unit is always the session's,
never a form field.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from asgi_csrf import asgi_csrf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common import messages as m
from services.common.access import check_access_code
from services.common.domain import REQUEST_NAMES_ZH, STAGE_NAMES_ZH, ServiceMode, Stage
from services.common.domain import Request as PlanRequest
from services.console import boards, exports
from services.console import overview as overviews
from services.console.accounts import ROLE_NAMES_ZH, Account, Attempt, Role
from services.console.enterprise import next_step, summarize
from services.console.explain import facts_from_form, facts_in_words
from services.console.load import Admission, Shared
from services.console.service import Console
from services.evaluation import views
from services.evaluation.ledger import (
    ENTERPRISE_ISSUE_STATES,
    LOCAL,
    STATE_NAMES_ZH,
    ItemState,
    allowed_from,
    awaits_task_order,
    local_day,
)
from services.notifier.compose import page_for
from services.notifier.plan import EVENT_NAMES_ZH

log = logging.getLogger("services.console")
HERE = Path(__file__).parent
OPERATOR_ROLES = (Role.GOV_SERVICE, Role.ECON_DEV, Role.DEPARTMENT, Role.SERVICE_COMPANY)
# who oversees every project (the overview; a project's every line): the two bureaus, and the 管委会's
# leaders, who read and never act (no page offers them a button, and every form refuses them)
OVERSEERS = (Role.GOV_SERVICE, Role.ECON_DEV, Role.LEADER)
INBOX_PAGE = 50  # notices a page of the inbox shows


@dataclass(frozen=True)
class Paged:
    """One page (``?page=N``, from 1) of a long list: a year's board can hold a thousand open lines."""

    rows: list[Any]
    number: int
    pages: int
    total: int

    SIZE = 100

    @classmethod
    def of(cls, rows: list[Any], request: Request) -> Paged:
        pages = max(1, -(-len(rows) // cls.SIZE))
        text = request.query_params.get("page", "1")
        number = min(max(int(text), 1), pages) if text.isdigit() and len(text) < 6 else 1
        return cls(rows[(number - 1) * cls.SIZE: number * cls.SIZE], number, pages, len(rows))


@dataclass
class Board:
    """A page of a unit's board as read for everyone who asked for it meanwhile: the page of its lines
    (read in the store), the blockers it must resolve, its unread count, and its tables once rendered
    ("items", "blockers")."""

    items: boards.LinePage
    blockers: list[Any]
    unread: int
    tables: dict[str, Any] = field(default_factory=dict)


class Refusal(Exception):
    """A page the session may not see: 403 with the reason."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class LoginNeeded(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


# -- plumbing: body limit, security headers, access log without query strings -------------------

class Guard:
    """Outermost layer: refuses bodies over ``max_bytes`` before anything reads them, sets the security
    headers, and logs each request by method, path and status (never the query, which may hold an
    access code, nor any form field).

    A request with a body is read here in full (at most ``max_bytes``) before the layers below see it,
    and refused unless it is what the console's forms send: ``application/x-www-form-urlencoded`` in
    UTF-8. The CSRF layer parses the body itself and failed with an exception (an HTTP 500 and a
    traceback in the log) on a chunked body over the limit, on bytes that are not UTF-8 and on any
    ``multipart/form-data`` body (asgi-csrf's multipart parser does not run with python-multipart 0.0.x)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), 500
        scope = dict(scope, headers=_headers(scope.get("headers") or []))

        async def secured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy",
                             b"default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; "
                             b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
                            (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
                message["headers"] = headers
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is None and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
                body = await self._body(receive)
                if body is None:
                    refusal = 413, "提交的内容过大"
                else:
                    refusal = self._form_refusal(scope, body)
                    receive = _replay(body, receive)
            if refusal is not None:
                await _plain(secured, *refusal)
                return
            await self.app(scope, receive, secured)
        except _Disconnected:
            status = 499
        finally:
            log.info("%s %s %d %.0fms", scope["method"], scope["path"], status, (time.monotonic() - started) * 1000)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return 413, "提交的内容过大"
        return None

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body (None if it is over the limit); ``_Disconnected`` if the client went away."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    def _form_refusal(scope: Scope, body: bytes) -> tuple[int, str] | None:
        kind = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
        if body and kind != b"application/x-www-form-urlencoded":
            return 415, "只接受网页表单提交的内容（application/x-www-form-urlencoded）"
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "提交的内容不是 UTF-8 编码"
        return None


def _headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """The request's headers as the CSRF layer and the app must both read them. asgi-csrf lets any
    request with "Authorization: Bearer …" through unchecked (meant for API tokens: the console has
    none, and would still honour the session cookie), so that header is dropped; and it reads the
    last Cookie header while Starlette reads the first, so a second, empty one made it skip the check
    ("no cookies") while the session still signed the request in: several are joined into one."""
    kept = [(k.lower(), v) for k, v in headers if k.lower() not in (b"authorization", b"cookie")]
    cookies = [v.strip() for k, v in headers if k.lower() == b"cookie" and v.strip()]
    return kept + ([(b"cookie", b"; ".join(cookies))] if cookies else [])


class _Disconnected(Exception):
    """The client went away before its body was read."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then whatever the client sends next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})


async def _csrf_failed(scope: Scope, send: Send, message_id: Any) -> None:
    await _plain(send, 403, "表单已过期或来源不明（CSRF 校验未通过），请返回刷新页面后重新提交。")


# -- the application ----------------------------------------------------------------------------

def create_app(console: Console) -> ASGIApp:
    settings = console.settings
    app = FastAPI(title="零跑腿服务台", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console
    templates = Jinja2Templates(directory=HERE / "templates")
    def limits_text(item_code: str, promised_days: int) -> str:
        """The line's limits, which the clock from 受理 runs and what the law allows (the catalog's)."""
        item = console.rules.book.catalog.get(item_code)
        return item.limits_text() if item is not None else f"承诺 {promised_days} 个工作日"

    templates.env.globals.update(ROLE_NAMES=ROLE_NAMES_ZH,
                                 unit_name=console.rules.unit_name, limits_text=limits_text,
                                 facts_in_words=lambda facts: facts_in_words(
                                     facts, console.rules.book.project_facts, console.rules.book.catalog,
                                     console.rules.unit_name))
    templates.env.filters["local"] = lambda moment: (moment.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")
                                                     if isinstance(moment, datetime) else moment)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # concurrent loads of a board (or of one account, each request checks it) share one read
    unit_boards: Shared[tuple[str, date, boards.LineQuery], Board] = Shared()
    accounts: Shared[str, Account | None] = Shared()
    app.state.boards, app.state.accounts = unit_boards, accounts

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context |= {"csrftoken": request.scope["csrftoken"](), "flashes": request.session.pop("flash", []),
                    "account": getattr(request.state, "account", None),
                    "enterprise": request.session.get("enterprise")}
        return templates.TemplateResponse(request, name, context, status_code=status)

    def macros() -> Any:
        return templates.env.get_template("_macros.html").module

    def flash(request: Request, kind: str, text: str) -> None:
        request.session.setdefault("flash", []).append([kind, text])

    def back(path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    async def operator(request: Request, *roles: Role) -> Account:
        """The signed-in account, if it has one of ``roles``: else to the login page, or 403."""
        username, version = request.session.get("user"), request.session.get("version")
        assert console.accounts is not None
        known = console.accounts
        account = await accounts.get(username, lambda: known.get(username)) if isinstance(username, str) else None
        if account is None or not account.active or account.session_version != version:
            request.session.pop("user", None)
            raise LoginNeeded(request.url.path)
        request.state.account = account
        if roles and account.role not in roles:
            raise Refusal(f"此页面仅供{'、'.join(ROLE_NAMES_ZH[r] for r in roles)}使用，"
                          f"您的账号是{ROLE_NAMES_ZH[account.role]}（{console.rules.unit_name(account.unit)}）")
        return account

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def too_many(request: Request, attempt: Attempt) -> HTMLResponse | None:
        """429 if the try (counted before it is made: see ``Attempts``) is over a key's limit."""
        if attempt.wait is None:
            return None
        minutes = max(1, round(attempt.wait.total_seconds() / 60))
        return page(request, "error.html", 429, title="尝试次数过多",
                    reason=f"失败次数过多，请约 {minutes} 分钟后再试。")

    def context_for(today: date | None = None) -> views.ViewContext:
        names = {code: unit.short_name for code, unit in console.rules.book.units.items()}
        return views.ViewContext(unit_names=names, calendar=console.calendar,
                                 service_response_days=console.rules.config.service_response_days,
                                 today=today or local_day(datetime.now(UTC)), cards=console.rules.config.cards,
                                 task_order_days=console.rules.config.task_order_issue_days)

    @app.exception_handler(LoginNeeded)
    async def to_login(request: Request, exc: LoginNeeded) -> Response:
        if exc.target == "/e/login":  # an enterprise (no session, or its project gone): its own form, not the staff's
            return back("/e/login")
        return back(f"/login?next={quote(exc.target)}")

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        return page(request, "error.html", exc.status, title={403: "无权访问", 400: "请求有误"}.get(exc.status, "未找到"),
                    reason=exc.reason)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return page(request, "error.html", 400, title="请求有误", reason="地址中的参数格式不正确（如年度须为数字）。")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        reasons = {404: "没有这个页面。", 405: "不支持这种请求方式。", 413: "提交的内容过大。"}
        return page(request, "error.html", exc.status_code, title=f"错误 {exc.status_code}",
                    reason=reasons.get(exc.status_code, str(exc.detail)))

    # -- sign in and out ---------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        if request.session.get("user"):
            account = await operator(request)
            return back({Role.RECRUITING: "/projects", Role.LEADER: "/overview"}.get(account.role, "/board"))
        if request.session.get("enterprise"):
            return back("/e")
        return page(request, "home.html")

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/") -> Response:
        return page(request, "login.html", next=_local_path(next))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        # a user name is at most 40 characters: anything longer is no account, and not a key to store
        username, password = str(form.get("username", "")).strip().lower()[:64], str(form.get("password", ""))
        target = _local_path(str(form.get("next", "/")))
        assert console.accounts is not None and console.attempts is not None
        attempt = await console.attempts.take([f"login:user:{username}", f"login:ip:{client(request)}"])
        if (blocked := await too_many(request, attempt)) is not None:
            return blocked
        account = await console.accounts.authenticate(username, password)
        if account is None:
            log.info("login refused")
            return page(request, "login.html", 401, next=target, error="用户名或密码错误，或账号已停用。")
        await console.attempts.refund(attempt)
        request.session.clear()
        request.session.update({"user": account.username, "version": account.session_version})
        log.info("login: %s (%s)", account.username, account.role.value)
        return back(target)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        username, version = request.session.get("user"), request.session.get("version")
        if isinstance(username, str) and isinstance(version, int):
            assert console.accounts is not None
            await console.accounts.end_sessions(username, version)
        request.session.clear()
        return back("/")

    # -- the enterprise: its project, by project code and access code -----------------------

    async def open_project(request: Request, project: str, code: str) -> Response:
        assert console.attempts is not None and console.ledger is not None
        # per client address only: a per-project count would let anyone lock an enterprise out of its own
        # project with five wrong codes, and an 80-bit code is not guessed in any number of windows
        attempt = await console.attempts.take([f"access:ip:{client(request)}"])
        if (blocked := await too_many(request, attempt)) is not None:
            return blocked
        key = console.settings.secret_key.get_secret_value()
        if not project or not check_access_code(key, project, code) or await console.ledger.project(project) is None:
            return page(request, "enterprise_login.html", 401, project=project,
                        error="项目编码或访问码不正确（访问码见“一次性告知”通知中的链接）。")
        await console.attempts.refund(attempt)
        request.session.clear()
        request.session["enterprise"] = project
        return back("/e")

    @app.get("/e/open")
    async def enterprise_link(request: Request, project: str = "", code: str = "") -> Response:
        return await open_project(request, project.strip(), code)

    @app.get("/e/login", response_class=HTMLResponse)
    async def enterprise_login_form(request: Request) -> Response:
        return page(request, "enterprise_login.html", project="")

    @app.post("/e/login")
    async def enterprise_login(request: Request) -> Response:
        form = await request.form()
        return await open_project(request, str(form.get("project", "")).strip(), str(form.get("code", "")))

    async def enterprise_project(request: Request) -> tuple[str, Any]:
        project = request.session.get("enterprise")
        if not isinstance(project, str):
            raise LoginNeeded("/e/login")
        assert console.ledger is not None
        progress = await views.project_progress(console.ledger, context_for(), project)
        if progress is None:
            request.session.clear()
            raise LoginNeeded("/e/login")
        return project, progress

    @app.get("/e", response_class=HTMLResponse)
    async def enterprise_home(request: Request) -> Response:
        project, progress = await enterprise_project(request)
        assert console.notices is not None and console.ledger is not None
        recipient = f"enterprise:{progress.project.credit_code}"
        notices = await console.notices.inbox(recipient, project=project, limit=200)
        year = local_day(datetime.now(UTC)).year
        providers = await _providers(progress, "enterprise", year)
        return page(request, "enterprise.html", progress=progress, notices=notices, providers=providers, year=year,
                    contacts=console.rules.contacts, questionnaire=console.rules.config.questionnaire,
                    active=[row for row in progress.items if row.state in ENTERPRISE_ISSUE_STATES],
                    summary=summarize(progress, console.rules.contacts), next_step=next_step)

    @app.get("/e/notices/{notice_id}", response_class=HTMLResponse)
    async def enterprise_notice(request: Request, notice_id: str) -> Response:
        project, progress = await enterprise_project(request)
        assert console.notices is not None
        recipient = f"enterprise:{progress.project.credit_code}"
        notice = await console.notices.notice(notice_id, recipient)
        if notice is None or notice.get("project_code") != project:
            raise Refusal("没有这条通知。", 404)
        await console.notices.mark_read(notice_id, recipient, datetime.now(UTC))
        return page(request, "notice.html", notice=notice, back_to="/e")

    @app.post("/e/issue")
    async def enterprise_issue(request: Request) -> Response:
        project, progress = await enterprise_project(request)
        form = await request.form()
        row = next((r for r in progress.items if r.key == form.get("item")), None)
        if row is None:
            flash(request, "error", "请选择要反映堵点/卡点的事项。")
            return back("/e#issue")
        await _send(request, m.ReportEnterpriseIssue, project_code=project, item_code=row.item_code,
                    request=row.request if row.request is PlanRequest.CONSULT else None,
                    requested_by=progress.project.credit_code, reason=str(form.get("reason", "")).strip())
        return back("/e#issue")

    @app.post("/e/assess")
    async def enterprise_assess(request: Request) -> Response:
        project, progress = await enterprise_project(request)
        form = await request.form()
        provider = str(form.get("provider", ""))
        if provider not in {r.responsible_unit for r in progress.items}:
            flash(request, "error", "请选择为本项目服务的单位。")
            return back("/e#assess")
        answers = _questionnaire(request, form)
        if answers is None:
            return back("/e#assess")
        scores, year, comment = answers
        await _send(request, m.SubmitAssessment, project_code=project, provider=provider, rater="enterprise",
                    requested_by=progress.project.credit_code, year=year,
                    scores=scores, comment=comment)
        return back("/e#assess")

    async def _providers(progress: Any, rater: str, year: int, exclude: str | None = None) -> list[dict[str, Any]]:
        """The units that served the project (a line no longer waiting), each with the 测评 ``rater``
        gave it this year if any; ``exclude``: a unit that may not rate its own service."""
        assert console.ledger is not None
        found = []
        for unit in sorted({row.responsible_unit for row in progress.items if row.state is not ItemState.WAITING}):
            if unit == exclude:
                continue
            done = await console.ledger.find_assessment(progress.project.code, unit, rater, year)
            found.append({"code": unit, "name": console.rules.unit_name(unit), "done": done})
        return found

    def _questionnaire(request: Request, form: Any) -> tuple[dict[str, float], int, str | None] | None:
        """The scores, year and comment of a 测评 form; None (with the reason flashed) if one is missing."""
        scores: dict[str, float] = {}
        for indicator in console.rules.config.questionnaire:
            try:
                scores[indicator.code] = float(str(form.get(f"score_{indicator.code}", "")))
            except ValueError:
                flash(request, "error", f"请为“{indicator.name}”打分（0–{indicator.points:g}）。")
                return None
            # checked here, on the page, so that a slip of the form is never a refused request (whose
            # notice would reach the enterprise by SMS and e-mail too)
            if not 0 <= scores[indicator.code] <= indicator.points:
                flash(request, "error", f"“{indicator.name}”的得分须在 0–{indicator.points:g} 分之间，"
                                        f"您填的是 {scores[indicator.code]:g} 分，请改正后再提交。")
                return None
        year = str(form.get("year", "")).strip()
        if not year.isdigit() or len(year) != 4:
            flash(request, "error", "测评年度须为四位数字。")
            return None
        return scores, int(year), str(form.get("comment", "")).strip() or None

    @app.post("/e/logout")
    async def enterprise_logout(request: Request) -> Response:
        request.session.clear()
        return back("/e/login")

    async def _send(http: Request, model: type[m.Command], **fields: Any) -> bool:
        """Publishes the request and flashes what the ledger said (or that it is still on its way)."""
        action = REQUEST_NAMES_ZH.get(str(model.model_fields["type"].default), "请求")
        try:
            _, outcome = await console.submit(model, **fields)
        except ValidationError as exc:
            problems = "；".join(_problem(e) for e in exc.errors()[:5])
            flash(http, "error", f"“{action}”填写有误：{problems}")
            return False
        if outcome is None:
            flash(http, "info", f"“{action}”已提交，台账尚未处理完毕，请稍后刷新查看。")
        elif outcome.status == "refused":
            flash(http, "error", f"“{action}”未被接受：{outcome.reason}")
            return False
        else:
            flash(http, "ok", f"“{action}”已办理。")
        return True

    # -- operators ---------------------------------------------------------------------------

    @app.get("/board", response_class=HTMLResponse)
    async def board(request: Request) -> Response:
        account = await operator(request, *OPERATOR_ROLES)
        assert console.ledger is not None and console.notices is not None
        ctx = context_for()
        ledger, notices = console.ledger, console.notices
        try:
            query = boards.LineQuery.parse(request.query_params)
            search = (await boards.resolve(ledger, console.rules.book.catalog, query.text, account.unit)
                      if query.text else None)
        except boards.BadQuery as exc:
            return page(request, "board.html", 400, problem=str(exc), query=boards.LineQuery(),
                        unit_name=console.rules.unit_name(account.unit), **_choices())
        where = {**query.where(), "responsible_unit": account.unit}

        async def read() -> Board:
            return Board(await boards.read_page(ledger, ctx, query, where, search),
                         await views.blockers_to_resolve(ledger, ctx, account.unit),
                         await notices.unread_count(f"unit:{account.unit}"))

        # one read for everyone who opens the same page of the unit's board meanwhile (each gets data read
        # after it asked), and its tables rendered once for all of them: only the frame is per request
        found = await unit_boards.get((account.unit, ctx.today, query), read)
        if not found.tables:
            found.tables.update(items=macros().item_table(found.items.rows),
                                blockers=macros().item_table(found.blockers))
        return page(request, "board.html", items=found.items, items_table=found.tables["items"],
                    blockers=found.blockers, blockers_table=found.tables["blockers"], unread=found.unread,
                    unit_name=console.rules.unit_name(account.unit), query=query, **_choices())

    @app.get("/board.xlsx")
    async def board_export(request: Request) -> Response:
        account = await operator(request, *OPERATOR_ROLES)
        assert console.ledger is not None
        query, search = await _line_query(request, unit=account.unit)
        rows = await boards.read_all(console.ledger, context_for(), {**query.where(), "responsible_unit": account.unit},
                                     search)
        name = console.rules.unit_name(account.unit)
        return exports.xlsx_response(exports.items_workbook("承办事项", f"{name}承办事项（{_filters_text(query)}）", rows),
                                     f"{name}-承办事项-{context_for().today}.xlsx")

    async def _line_query(request: Request, units: dict[str, str] | None = None,
                          unit: str | None = None) -> tuple[boards.LineQuery, Any]:
        """The filters and the resolved search of a list's address (``unit``: a unit's own list, searched
        among its own projects only); a bad one is a 400 page with the reason."""
        assert console.ledger is not None
        try:
            query = boards.LineQuery.parse(request.query_params, units)
            search = (await boards.resolve(console.ledger, console.rules.book.catalog, query.text, unit)
                      if query.text else None)
        except boards.BadQuery as exc:
            raise Refusal(str(exc), 400) from exc
        return query, search

    def _choices() -> dict[str, Any]:
        """The options of the lists' filter forms."""
        return {"state_choices": [(s.value, STATE_NAMES_ZH[s]) for s in boards.OPEN_STATES],
                "level_choices": list(boards.LEVEL_CHOICES.items()),
                "stage_choices": [(s.value, STAGE_NAMES_ZH[s]) for s in Stage],
                "unit_choices": list(_unit_names().items())}

    def _unit_names() -> dict[str, str]:
        return {code: unit.short_name for code, unit in console.rules.book.units.items()}

    def _filters_text(query: boards.LineQuery) -> str:
        parts = [f"状态：{STATE_NAMES_ZH[query.state]}" if query.state else "",
                 f"等级：{boards.LEVEL_CHOICES[query.level]}" if query.level else "",
                 f"阶段：{STAGE_NAMES_ZH[query.stage]}" if query.stage else "",
                 f"项目：{query.project}" if query.project else "",
                 f"承办单位：{console.rules.unit_name(query.unit)}" if query.unit else "",
                 f"搜索：{query.text}" if query.text else "",
                 "含等待前置事项的事项" if query.waiting or query.state else "不含等待前置事项的事项"]
        return "，".join(p for p in parts if p) + f"；导出于 {datetime.now(UTC).astimezone(LOCAL):%Y-%m-%d %H:%M}"

    # -- the overview: every project of the year, the cards per unit and stage (政务服务局, 经发局, 管委会) --

    @app.get("/overview", response_class=HTMLResponse)
    async def overview_page(request: Request, year: int | None = None, q: str = "") -> Response:
        await operator(request, *OVERSEERS)
        assert console.ledger is not None
        ctx = context_for()
        year = year or ctx.today.year
        if not 2000 <= year <= 2100:
            raise Refusal(f"年度 {year} 不在 2000–2100 之间", 400)
        text = q.strip()[:40]
        found = await overviews.overview(console.ledger, ctx, _unit_names(), year, text)
        return page(request, "overview.html", view=found, text=text, years=overviews.years(ctx.today),
                    projects=Paged.of(list(found.projects), request), level_names=boards.LEVEL_CHOICES)

    @app.get("/overview/items", response_class=HTMLResponse)
    async def overview_items(request: Request) -> Response:
        await operator(request, *OVERSEERS)
        assert console.ledger is not None
        query, search = await _line_query(request, _unit_names())
        found = await boards.read_page(console.ledger, context_for(), query, query.where(), search)
        return page(request, "lines.html", items=found, items_table=macros().item_table(found.rows), query=query,
                    filters=_filters_text(query), **_choices())

    @app.get("/overview/items.xlsx")
    async def overview_items_export(request: Request) -> Response:
        await operator(request, *OVERSEERS)
        assert console.ledger is not None
        query, search = await _line_query(request, _unit_names())
        rows = await boards.read_all(console.ledger, context_for(), query.where(), search)
        return exports.xlsx_response(exports.items_workbook("事项", f"未办结事项（{_filters_text(query)}）", rows),
                                     f"未办结事项-{context_for().today}.xlsx")

    @app.get("/task-orders", response_class=HTMLResponse)
    async def task_orders(request: Request) -> Response:
        account = await operator(request, Role.ECON_DEV, Role.SERVICE_COMPANY)
        to_issue, orders = await _task_order_lists(account)
        return page(request, "task_orders.html", to_issue=to_issue, orders=Paged.of(orders, request))

    async def _task_order_lists(account: Account) -> tuple[list[Any], list[Any]]:
        """The orders to issue (经发局 only) and those under way, issued (to accept) first, then accepted
        (closed ones are in each item's history): 经发局 sees every order, 政联公司 its own."""
        assert console.ledger is not None
        ctx = context_for()
        assigned_to = None if account.role is Role.ECON_DEV else account.unit
        to_issue = await views.task_orders_to_issue(console.ledger, ctx) if assigned_to is None else []
        orders = [*await views.task_orders(console.ledger, ctx, assigned_to=assigned_to, state="issued"),
                  *await views.task_orders(console.ledger, ctx, assigned_to=assigned_to, state="accepted")]
        return list(to_issue), orders

    @app.get("/task-orders.xlsx")
    async def task_orders_export(request: Request) -> Response:
        account = await operator(request, Role.ECON_DEV, Role.SERVICE_COMPANY)
        to_issue, orders = await _task_order_lists(account)
        rows, today = [*to_issue, *orders], context_for().today
        name = console.rules.unit_name(account.unit)
        return exports.xlsx_response(
            exports.items_workbook("专业跑腿任务单", f"专业跑腿任务单：待下发、待接收、已接收（{name}，{today}）", rows),
            f"专业跑腿任务单-{today}.xlsx")

    @app.get("/items/{project}/{item}", response_class=HTMLResponse)
    async def item_page(request: Request, project: str, item: str, consult: bool = False) -> Response:
        account = await operator(request)
        progress, row = await _item(project, item, consult)
        actions = _actions(account, row, progress.project.recruiting_unit)
        if not actions and not _may_view(account, progress, row):
            raise Refusal(f"事项 {project}/{item} 不归{console.rules.unit_name(account.unit)}办理，无权查看")
        return page(request, "item.html", progress=progress, row=row, actions=actions,
                    contacts=console.rules.contacts, units=console.rules.book.units,
                    names_specialist=_names_specialist(account, row))

    @app.post("/items/{project}/{item}")
    async def item_action(request: Request, project: str, item: str, consult: bool = False) -> Response:
        account = await operator(request, *OPERATOR_ROLES, Role.RECRUITING)
        progress, row = await _item(project, item, consult)
        form = await request.form()
        action = str(form.get("action", ""))
        if action not in _actions(account, row, progress.project.recruiting_unit):
            raise Refusal(f"{console.rules.unit_name(account.unit)}不能对事项 {project}/{item} 执行“{action}”"
                          "（首问负责：由承办单位办理；堵点由须解决的单位解除，也可由项目招引单位报告；"
                          "任务单由经发局下发、政联公司接收）")
        model, extra = ACTIONS[action]
        fields: dict[str, Any] = {name: _field(form, name) for name in extra}
        target = request.url.path + ("?consult=true" if consult else "")
        if action == "deliver":
            fields["results"] = tuple(line.strip() for line in str(form.get("results", "")).splitlines() if line.strip())
        requested_by, person = account.unit, account.display_name
        if action == "contact" and _names_specialist(account, row):
            if not (fields["specialist_name"] and fields["specialist_phone"]):
                flash(request, "error", "“对接企业”填写有误：帮办代办事项对接企业时须指定服务专员（姓名和手机号，"
                                        "方案四(一)），企业会收到服务专员的联系方式")
                return back(target)
        elif action == "enterprise_issue":
            # 政务服务局 enters a 堵点 the enterprise phoned in: the request is the enterprise's own (its
            # credit code), the operator who typed it is recorded beside it
            requested_by = progress.project.credit_code
            person = f"{account.display_name}（{console.rules.unit_name(account.unit)}代企业录入）"
        await _send(request, model, project_code=project, item_code=item, requested_by=requested_by,
                    operator=person, request=PlanRequest.CONSULT if consult else None, **fields)
        return back(target)

    async def _item(project: str, item: str, consult: bool) -> tuple[Any, Any]:
        assert console.ledger is not None
        progress = await views.project_progress(console.ledger, context_for(), project)
        wanted = PlanRequest.CONSULT if consult else PlanRequest.HANDLE
        lines = [] if progress is None else [r for r in progress.items if r.item_code == item]
        # a link without ?consult=true (a notice's) to an item planned for advice only opens that line
        row = next((r for r in lines if r.request is wanted), lines[0] if len(lines) == 1 and not consult else None)
        if progress is None or row is None:
            raise Refusal(f"台账中没有事项 {project}/{item}", 404)
        return progress, row

    def _may_view(account: Account, progress: Any, row: Any = None) -> bool:
        """政务服务局 and 经发局 oversee every project, a 招引单位 the projects it brought in; a
        department or 政联公司 sees its own lines only (``row``: that line; None: any line of the project)."""
        if account.role in OVERSEERS:
            return True
        if account.role is Role.RECRUITING:
            return bool(progress.project.recruiting_unit == account.unit)
        return any(_own(account, r) for r in ([row] if row is not None else progress.items))

    @app.get("/projects", response_class=HTMLResponse)
    async def projects(request: Request) -> Response:
        account = await operator(request, Role.RECRUITING)
        assert console.ledger is not None
        found = await views.recruiting_projects(console.ledger, context_for(), account.unit)
        return page(request, "projects.html", projects=Paged.of(found, request),
                    unit_name=console.rules.unit_name(account.unit))

    async def _viewable_project(account: Account, project: str, doing: str) -> Any:
        """The project's progress if ``account`` may see it (``_may_view``); else a refusal naming what
        it wanted to do (查看, 下载其台账), or 404 for a project the ledger does not hold."""
        assert console.ledger is not None
        progress = await views.project_progress(console.ledger, context_for(), project)
        if progress is None:
            raise Refusal(f"台账中没有项目 {project}", 404)
        if not _may_view(account, progress):
            raise Refusal(f"项目 {project} 不是{console.rules.unit_name(account.unit)}招引或承办的项目，无权{doing}")
        return progress

    @app.get("/projects/{project}", response_class=HTMLResponse)
    async def project_page(request: Request, project: str) -> Response:
        account = await operator(request)
        progress = await _viewable_project(account, project, "查看")
        rows = progress.items
        if account.role in (Role.DEPARTMENT, Role.SERVICE_COMPANY):
            rows = tuple(r for r in rows if _own(account, r))
        year = local_day(datetime.now(UTC)).year
        recruiter = account.role is Role.RECRUITING and progress.project.recruiting_unit == account.unit
        # the 招引单位's 测评 (方案五(六)) of every unit serving the project but itself
        providers = await _providers(progress, "recruiting_unit", year, exclude=account.unit) if recruiter else []
        return page(request, "project.html", progress=progress, rows=rows, partial=len(rows) < len(progress.items),
                    contacts=console.rules.contacts, recruiter=recruiter, providers=providers, year=year,
                    questionnaire=console.rules.config.questionnaire)

    @app.get("/projects/{project}/ledger.xlsx")
    async def project_export(request: Request, project: str) -> Response:
        account = await operator(request)
        progress = await _viewable_project(account, project, "下载其台账")
        rows = [replace(r, project_name=progress.project.name, enterprise_name=progress.project.enterprise)
                for r in progress.items if account.role not in (Role.DEPARTMENT, Role.SERVICE_COMPANY) or _own(account, r)]
        heading = (f"{progress.project.code} {progress.project.name}（{progress.project.enterprise}）台账，"
                   f"签约 {progress.project.signed_on}，招引单位 {progress.recruiting_unit_name}")
        return exports.xlsx_response(exports.items_workbook("项目台账", heading, rows),
                                     f"{progress.project.code}-台账-{context_for().today}.xlsx")

    @app.post("/projects/{project}/assess")
    async def recruiting_assess(request: Request, project: str) -> Response:
        account = await operator(request, Role.RECRUITING)
        assert console.ledger is not None
        progress = await views.project_progress(console.ledger, context_for(), project)
        if progress is None:
            raise Refusal(f"台账中没有项目 {project}", 404)
        if progress.project.recruiting_unit != account.unit:
            raise Refusal(f"项目 {project} 不是{console.rules.unit_name(account.unit)}招引的项目，不能以招引单位身份测评")
        form = await request.form()
        target = f"/projects/{project}#assess"
        provider = str(form.get("provider", ""))
        if provider == account.unit:
            flash(request, "error", "不能测评本单位自己提供的服务。")
            return back(target)
        if provider not in {r.responsible_unit for r in progress.items}:
            flash(request, "error", "请选择为本项目服务的单位。")
            return back(target)
        answers = _questionnaire(request, form)
        if answers is None:
            return back(target)
        scores, year, comment = answers
        await _send(request, m.SubmitAssessment, project_code=project, provider=provider, rater="recruiting_unit",
                    requested_by=account.unit, operator=account.display_name, year=year, scores=scores,
                    comment=comment)
        return back(target)

    @app.get("/rectify", response_class=HTMLResponse)
    async def rectify_page(request: Request) -> Response:
        """差评整改 (方案五(六)): the 差评 of the unit's own service, to rectify; for 政务服务局 and 经发局
        also the 差评 of the services they evaluate, to follow."""
        account = await operator(request, *OPERATOR_ROLES)
        assert console.ledger is not None
        ctx = context_for()
        own = await views.rectifications_of(console.ledger, ctx, account.unit)
        evaluated = []
        if account.role in (Role.GOV_SERVICE, Role.ECON_DEV):
            evaluated = [r for r in await views.rectifications_evaluated_by(
                console.ledger, ctx, account.unit, (ctx.today.year, ctx.today.year - 1)) if r.provider != account.unit]
        return page(request, "rectify.html", own=own, evaluated=evaluated,
                    unit_name=console.rules.unit_name(account.unit))

    @app.post("/rectify/{assessment_id}")
    async def rectify(request: Request, assessment_id: str) -> Response:
        account = await operator(request, *OPERATOR_ROLES)
        form = await request.form()
        await _send(request, m.RectifyAssessment, assessment_id=assessment_id, requested_by=account.unit,
                    operator=account.display_name, note=str(form.get("note", "")).strip())
        return back(f"/rectify#a-{quote(assessment_id, safe='')}")

    def _inbox_filters(request: Request, source: Any) -> dict[str, Any]:
        """The inbox's filters (kind, project, unread only) from the query or the bulk form."""
        kind = str(source.get("kind", "")).strip()
        project = str(source.get("project", "")).strip()[:64]
        return {"kind": kind if kind in EVENT_NAMES_ZH else "", "project": project,
                "unread": str(source.get("unread", "")) in ("1", "on", "true")}

    def _recipients(account: Account) -> list[str]:
        return [f"unit:{account.unit}"] + (["role:operators"] if account.role is Role.GOV_SERVICE else [])

    @app.get("/inbox", response_class=HTMLResponse)
    async def inbox(request: Request) -> Response:
        account = await operator(request)
        assert console.notices is not None
        chosen = _inbox_filters(request, request.query_params)
        # a 招引单位 account: only the notices about the projects it brought in (in the query, so the
        # department's own work on the same unit key neither shows nor crowds them out of the page)
        recruited = sorted(await _recruited(account)) if account.role is Role.RECRUITING else None
        text = request.query_params.get("page", "1")
        number = int(text) if text.isdigit() and len(text) < 5 and int(text) > 0 else 1
        size = INBOX_PAGE
        found: list[dict[str, Any]] = []
        for recipient in _recipients(account):  # each newest first; what a page needs of each, merged
            found += await console.notices.inbox(recipient, projects=recruited, project=chosen["project"] or None,
                                                 unread_only=chosen["unread"], event_type=chosen["kind"] or None,
                                                 limit=number * size + 1)
        found.sort(key=lambda n: (n["created_at"], n["_id"]), reverse=True)
        shown = found[(number - 1) * size: number * size]
        unread = sum([await console.notices.unread_count(r) for r in _recipients(account)]) \
            if account.role is not Role.RECRUITING else None
        query = "&".join(f"{k}={quote(str(v))}" for k, v in (("kind", chosen["kind"]), ("project", chosen["project"]),
                                                               ("unread", "1" if chosen["unread"] else "")) if v)
        return page(request, "inbox.html", notices=shown, chosen=chosen, kinds=EVENT_NAMES_ZH, unread=unread,
                    number=number, more=len(found) > number * size, query=query,
                    pages={n["_id"]: page_for(n.get("event_type", ""), n.get("project_code"), n.get("item_code"))
                           for n in shown})

    @app.post("/inbox/read")
    async def inbox_read(request: Request) -> Response:
        """Marks read at once the notices ticked, or (``all``) every unread one the filters select."""
        account = await operator(request)
        assert console.notices is not None
        form = await request.form()
        chosen = _inbox_filters(request, form)
        recruited = sorted(await _recruited(account)) if account.role is Role.RECRUITING else None
        ids = None if form.get("all") else [str(i) for i in form.getlist("id")][:INBOX_PAGE]
        if ids is not None and not ids:
            flash(request, "error", "请先勾选要标记为已读的通知，或点“全部标记为已读”。")
        else:
            now = datetime.now(UTC)
            marked = 0
            for recipient in _recipients(account):
                marked += await console.notices.mark_all_read(recipient, now, ids=ids, projects=recruited,
                                                              project=chosen["project"] or None,
                                                              event_type=chosen["kind"] or None)
            flash(request, "ok", f"已将 {marked} 条通知标记为已读。")
        query = "&".join(f"{k}={quote(str(v))}" for k, v in (("kind", chosen["kind"]), ("project", chosen["project"]),
                                                               ("unread", "1" if chosen["unread"] else "")) if v)
        return back("/inbox" + (f"?{query}" if query else ""))

    @app.get("/inbox/{notice_id}", response_class=HTMLResponse)
    async def inbox_notice(request: Request, notice_id: str) -> Response:
        account = await operator(request)
        assert console.notices is not None
        for recipient in _recipients(account):
            notice = await console.notices.notice(notice_id, recipient)
            if notice is not None and account.role is Role.RECRUITING \
                    and notice.get("project_code") not in await _recruited(account):
                notice = None
            if notice is not None:
                await console.notices.mark_read(notice_id, recipient, datetime.now(UTC))
                return page(request, "notice.html", notice=notice, back_to="/inbox",
                            act_at=page_for(notice.get("event_type", ""), notice.get("project_code"),
                                            notice.get("item_code")))
        raise Refusal("没有这条通知。", 404)

    async def _recruited(account: Account) -> set[str]:
        """The projects a 招引单位 account brought in. Its unit's inbox (``unit:CODE``) is shared with
        the unit's operators when the unit is also a department: a 招引单位 account reads (and marks
        read) only the notices about the projects it brought in, never the department's work."""
        assert console.ledger is not None
        return {p.code for p in await console.ledger.recruiting_unit_projects(account.unit)}

    @app.get("/unroutable", response_class=HTMLResponse)
    async def unroutable(request: Request) -> Response:
        await operator(request, Role.GOV_SERVICE)
        assert console.ledger is not None
        items = await views.unroutable_items(console.ledger)
        rejected = [h for h in await views.rules_history(console.ledger) if h.type == "rules.rejected"]
        return page(request, "unroutable.html", items=items, rejected=rejected)

    @app.get("/rules", response_class=HTMLResponse)
    async def rules_page(request: Request) -> Response:
        await operator(request, Role.GOV_SERVICE, Role.ECON_DEV)
        assert console.ledger is not None
        history = await views.rules_history(console.ledger)
        active = await views.active_rules_version(console.ledger)
        explained = None
        item = request.query_params.get("item")
        # one labelled input per declared fact (名称=值 text still accepted, as links and the CLI write it)
        facts = request.query_params.get("facts") or facts_from_form(request.query_params, console.rules.book.project_facts)
        if item:
            explained = await _explain(item.strip(), facts, request.query_params.get("consult") == "true")
        book = console.rules.book
        return page(request, "rules.html", history=history, active=active, explained=explained, item=item or "",
                    facts=facts, catalog=book.catalog, project_facts=book.project_facts, values=request.query_params)

    async def _explain(item: str, facts_text: str, consult: bool) -> dict[str, Any]:
        from services.console.explain import explain

        return await explain(console.rules.directory, item, facts_text, consult)

    async def _report(request: Request, year: int | None, evaluator: str | None) -> tuple[Any, int, str]:
        """The annual evaluation of ``year`` by the account's bureau; a leader chooses the evaluator
        (政务服务局: 帮办代办/联审联批, the default; 经发局: 专业跑腿)."""
        account = await operator(request, Role.GOV_SERVICE, Role.ECON_DEV, Role.LEADER)
        from services.evaluation.scoring import evaluate_year

        assert console.ledger is not None
        now = datetime.now(UTC)
        year = year or local_day(now).year
        if not 2000 <= year <= 2100:
            raise Refusal("年度须在 2000–2100 之间", 404)
        evaluators = {Role.GOV_SERVICE: "gov_service_bureau", Role.ECON_DEV: "econ_dev_bureau"}
        if account.role is Role.LEADER:
            chosen = evaluator or "gov_service_bureau"
            if chosen not in evaluators.values():
                raise Refusal(f"评价单位“{chosen[:40]}”无效：只能是 gov_service_bureau（政务服务局）或 "
                              "econ_dev_bureau（经济发展招商服务局）", 400)
        else:
            chosen = evaluators[account.role]
        result = await evaluate_year(console.ledger, year, console.rules.config, console.rules.book.units,
                                     console.calendar, local_day(now), now, evaluator=chosen)
        return result, year, chosen

    @app.get("/report", response_class=HTMLResponse)
    async def report(request: Request, year: int | None = None, evaluator: str | None = None) -> Response:
        from services.evaluation.report import render_html

        result, year, chosen = await _report(request, year, evaluator)
        account = request.state.account
        links = ['<a href="/">返回服务台</a>',
                 f'<a href="/report.xlsx?year={year}&amp;evaluator={chosen}" download>下载 Excel</a>']
        if account.role is Role.LEADER:
            links += [f'<a href="/report?year={year}&amp;evaluator={code}">{name}的评价</a>'
                      for code, name in (("gov_service_bureau", "政务服务局"), ("econ_dev_bureau", "经发局"))]
        links += [f'<a href="/report?year={y}&amp;evaluator={chosen}">{y} 年度</a>' for y in (year - 1, year + 1)]
        links.append("<span>打印本页即得报告（导航不打印）</span>")
        return HTMLResponse(render_html(result, "".join(links)))

    @app.get("/report.xlsx")
    async def report_export(request: Request, year: int | None = None, evaluator: str | None = None) -> Response:
        result, year, chosen = await _report(request, year, evaluator)
        name = "政务服务局" if chosen == "gov_service_bureau" else "经发局"
        return exports.xlsx_response(exports.report_workbook(result), f"{year}年度综合评价-{name}.xlsx")

    session_key = f"session:{settings.secret_key.get_secret_value()}"
    app.add_middleware(SessionMiddleware, secret_key=session_key, session_cookie="zeroerrand_session",
                       max_age=int(settings.session_hours * 3600), same_site="lax", https_only=settings.cookies_secure)
    protected = asgi_csrf(app, signing_secret=f"csrf:{settings.secret_key.get_secret_value()}",
                          always_protect={"/login", "/e/login", "/logout", "/e/logout"},
                          cookie_secure=settings.cookies_secure, cookie_samesite="Lax", send_csrf_failed=_csrf_failed)
    admission = Admission(protected, settings.max_in_flight, settings.max_queued, settings.queue_wait_s,
                          settings.retry_after_s)
    app.state.admission = admission
    return Guard(admission, settings.max_body_bytes)


ACTIONS: dict[str, tuple[type[m.Command], tuple[str, ...]]] = {
    "contact": (m.ContactEnterprise, ("note", "specialist_name", "specialist_phone")),
    "accept": (m.AcceptItem, ("note",)),
    "progress": (m.ReportProgress, ("note",)),
    "block": (m.ReportBlocker, ("reason", "resolver")),
    "unblock": (m.ResolveBlocker, ("note",)),
    "suspend": (m.SuspendItem, ("reason",)),
    "resume": (m.ResumeItem, ("note",)),
    "complete": (m.CompleteItem, ("note",)),
    "deliver": (m.DeliverResults, ("note",)),
    "issue_order": (m.IssueTaskOrder, ("note",)),
    "accept_order": (m.AcceptTaskOrder, ("specialist_name", "specialist_phone")),
    "enterprise_issue": (m.ReportEnterpriseIssue, ("reason",)),
}
# the buttons of the responsible unit, in the order they are shown
OWNER_ACTIONS = ("contact", "accept", "progress", "complete", "block", "suspend", "resume", "deliver")


def _actions(account: Account, row: Any, recruiting_unit: str | None = None) -> list[str]:
    """The buttons this account gets for this item: the ledger still decides, these only avoid offering
    what it would certainly refuse (首问负责, the item's state, the task order), by the ledger's own rules.
    A 招引单位 account may report a 堵点/卡点 on the items of the projects it brought in (方案三(二), 四(二))."""
    order_state = None if row.task_order is None else row.task_order.state

    def possible(action: str) -> bool:
        kind = _type_of(action)
        return (row.state in allowed_from(kind, row.request)
                and not awaits_task_order(kind, row.task_order_required, order_state))

    if account.role is Role.RECRUITING:
        return ["block"] if account.unit == recruiting_unit and possible("block") else []

    found = [action for action in OWNER_ACTIONS if account.unit == row.responsible_unit and possible(action)]
    if possible("unblock") and (account.unit == row.responsible_unit
                                or any(b.resolver == account.unit for b in row.blockers)):
        found.append("unblock")
    if account.role is Role.ECON_DEV and row.task_order_to_issue:
        found.append("issue_order")
    if (account.role is Role.SERVICE_COMPANY and order_state == "issued" and possible("accept_order")
            and row.task_order.assigned_to == account.unit):
        found.append("accept_order")
    if account.role is Role.GOV_SERVICE and row.state in ENTERPRISE_ISSUE_STATES:
        found.append("enterprise_issue")  # a 堵点/卡点 the enterprise phoned in, entered for it (方案四(二))
    return found


def _names_specialist(account: Account, row: Any) -> bool:
    """政务服务局 names its 帮办代办 服务专员 when it contacts the enterprise on a 帮办代办 line (方案四(一))."""
    return bool(account.role is Role.GOV_SERVICE and row.mode is ServiceMode.ASSIST
                and account.unit == row.responsible_unit)


def _type_of(action: str) -> str:
    return str(ACTIONS[action][0].model_fields["type"].default)


FIELD_NAMES = {"note": "备注/说明", "reason": "原因", "resolver": "须解决的单位", "results": "审批结果",
               "specialist_name": "服务专员姓名", "specialist_phone": "服务专员电话", "comment": "评价意见",
               "scores": "测评得分", "year": "年度"}


def _problem(error: Any) -> str:
    """One validation error of a form, in Chinese: which field, and what is wrong with it."""
    where = FIELD_NAMES.get(str(error["loc"][0]) if error["loc"] else "", "")
    kind, limits = error["type"], error.get("ctx") or {}
    if kind in ("missing", "string_type", "string_too_short", "too_short"):
        what = "不能为空"
    elif kind in ("string_too_long", "too_long"):
        what = f"过长（至多 {limits.get('max_length', '')} {'字' if kind == 'string_too_long' else '项'}）"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        what = "超出范围"
    else:  # the models' own reasons are in Chinese, with an English gloss after " / " for logs
        what = str(error.get("msg", "不符合要求")).removeprefix("Value error, ").split(" / ")[0]
    if not error["loc"] and kind == "value_error":
        return what  # a check of the whole form: its reason names the fields
    return f"{where or '内容'}{what}"


def _own(account: Account, row: Any) -> bool:
    """A line the account's unit works on: it is responsible, must resolve a blocker, or holds its task order."""
    return bool(row.responsible_unit == account.unit or any(b.resolver == account.unit for b in row.blockers)
                or (row.task_order is not None and row.task_order.assigned_to == account.unit))


def _field(form: Any, name: str) -> str | None:
    value = str(form.get(name, "")).strip()
    return value or None


def _local_path(target: str) -> str:
    """Only a path on this site (never ``//host`` or a scheme): an open redirect otherwise."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"

