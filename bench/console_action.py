"""A console action as a department's official makes it: click → the page with the ledger's answer
(prints figures; it is not a test and asserts nothing on timing).

In one run, on a freshly started embedded store (or ``--mongodb-url``) and a private RabbitMQ vhost
(created and deleted here), with the evaluation service and the console running in this process
as ``zeroerrand up`` runs them (the console served over HTTP on a local port):

- ``--projects`` projects with ``--lines`` ready lines each of 规划建设局 are put in the ledger;
- one account of 规划建设局 signs in over HTTP as a person does (the login form, its CSRF token);
- **baseline**, measured in the same run: the item's page loaded (``GET /items/<project>/<item>``),
  the same page the action ends on, without any action;
- **action**: for ``--actions`` lines, one after another, 对接企业 submitted on the line's page
  (``POST``, the console publishes the request and waits for the ledger's answer, then redirects)
  and the page it redirects to loaded: timed from the POST to the page's last byte, and the page
  checked to say "已办理" and to offer 对接企业 no more.

Printed: p50/p95/p99 of both, and the action's p95 against the goal (≤ 150 ms).

    .venv/bin/python bench/console_action.py [--projects 60] [--lines 12] [--actions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ledger_requests import UNIT, fill_ledger, percentile  # noqa: E402
from bench.machine import cpu_seconds, cpu_split, describe  # noqa: E402
from bench.scaffold import fresh_store, private_vhost  # noqa: E402
from services.common.rule_files import load_rulebook  # noqa: E402
from services.common.settings import BrokerSettings, ConsoleSettings, EvaluationSettings, RuntimeSettings  # noqa: E402
from services.console.accounts import Accounts, Role  # noqa: E402
from services.console.app import create_console  # noqa: E402
from services.evaluation.app import create_evaluation  # noqa: E402
from services.evaluation.repository import COLLECTIONS  # noqa: E402

PASSWORD = "bench-password-0123"
KEY = "bench-console-key-0123456789abcdef"


def token(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    if found is None:
        raise RuntimeError("the page has no form with a CSRF token")
    return found.group(1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=60)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--actions", type=int, default=200)
    parser.add_argument("--mongodb-url", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("faststream.access.rabbit").disabled = True
    rules = ROOT / "rules"

    with private_vhost() as url:
        async with fresh_store(args.mongodb_url, "bench") as store:
            await store.ensure(COLLECTIONS)
            lines = await fill_ledger(store, args.projects, args.lines)
            broker = BrokerSettings(amqp_url=url)
            evaluation = create_evaluation(EvaluationSettings(rules_dir=rules, sweep=False), broker, store=store)
            settings = ConsoleSettings(port=0, secret_key=KEY, public_url="http://127.0.0.1")
            console = create_console(settings, broker, store=store,
                                     runtime=RuntimeSettings(environment="development"), rules_dir=rules)
            await Accounts(store).add("planning", "规划建设局办事员", UNIT, Role.DEPARTMENT, PASSWORD,
                                      load_rulebook(rules).units)
            await evaluation.app.start()
            await console.start()
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{console.port}", timeout=30) as client:
                    login = await client.get("/login")
                    signed_in = await client.post("/login", data={"username": "planning", "password": PASSWORD,
                                                                  "csrftoken": token(login.text)})
                    if signed_in.status_code != 303:
                        raise RuntimeError(f"sign-in refused: {signed_in.status_code}")
                    views, actions = [], []
                    cpu0 = cpu_seconds()
                    for code, item in lines[:args.actions]:
                        t0 = time.perf_counter()
                        page = await client.get(f"/items/{code}/{item}")
                        views.append(time.perf_counter() - t0)
                        page.raise_for_status()
                        t0 = time.perf_counter()
                        answer = await client.post(f"/items/{code}/{item}", data={
                            "csrftoken": token(page.text), "action": "contact", "note": "已电话联系企业"},
                            follow_redirects=True)
                        actions.append(time.perf_counter() - t0)
                        answer.raise_for_status()
                        if "已办理。" not in answer.text or 'data-action="contact"' in answer.text:
                            raise RuntimeError(f"{code}/{item}: the page after 对接企业 does not show it done: "
                                               + " ".join(re.findall(r'class="flash[^"]*">([^<]*)<', answer.text)))
                    spent = cpu_split(cpu0, cpu_seconds())
            finally:
                await console.stop()
                await evaluation.app.stop()
    view_ms, action_ms = [s * 1000 for s in views], [s * 1000 for s in actions]

    def figures(ms: list[float]) -> str:
        return (f"p50 {percentile(ms, .5):.1f} ms, p95 {percentile(ms, .95):.1f} ms, p99 {percentile(ms, .99):.1f} ms, "
                f"max {max(ms):.1f} ms (n = {len(ms)})")

    print(f"machine: {describe()}")
    print(f"store: {'embedded (FerretDB on PostgreSQL)' if args.mongodb_url is None else args.mongodb_url}; "
          f"ledger: {len(lines)} open lines of {args.projects} projects")
    print(f"(a) baseline, the item's page loaded: {figures(view_ms)}")
    print(f"(b) action, click 对接企业 → the page with the ledger's answer: {figures(action_ms)}; "
          f"p95 / the page's p95 = {percentile(action_ms, .95) / percentile(view_ms, .95):.1f} x (goal p95 <= 150 ms)")
    print(f"CPU during (a) and (b) (the console and the evaluation service run in this process): {spent}")


if __name__ == "__main__":
    asyncio.run(main())
