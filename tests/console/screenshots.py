"""Take the README's console screenshots from a real stack: ``python -m tests.console.screenshots``.

Starts a redis-server, the API, one worker and a loopback receiver, sends real
events to real endpoints (one healthy, one slow, one flaky, one failing), waits
until they have settled, then photographs the pages in Debian's headless
Chromium into ``docs/img/`` (1200 px wide PNGs). Everything it starts, it stops.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from tests.conftest import ADMIN_TOKEN, ROOT, SECRET_KEY, api_config
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.api_server import ApiServer
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import RedisProc

OUT = ROOT / "docs" / "img"
WIDTH = 1200


def worker(redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env.update(
        WEBHOOKS_REDIS_URL=redis_url,
        WEBHOOKS_ADMIN_TOKEN=ADMIN_TOKEN,
        WEBHOOKS_SECRET_KEY=SECRET_KEY,
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOKS_RETRY_SCHEDULE="1,2,3",
        WEBHOOKS_REQUEST_TIMEOUT_S="10",
        PYTHONPATH=str(ROOT),
    )
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", "worker"], env=env, stdout=out, stderr=out)


def seed(api: httpx.Client, receiver: Receiver) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = api.post("/v1/tenants", json={"name": "Acme Billing"}, headers=admin).json()
    api.post("/v1/tenants", json={"name": "Globex"}, headers=admin)
    key = {"Authorization": f"Bearer {tenant['api_key']}"}

    def endpoint(path: str, description: str, **extra: Any) -> dict[str, Any]:
        body = {"url": receiver.url(path), "description": description, **extra}
        made = api.post("/v1/endpoints", json=body, headers=key)
        assert made.status_code == 201, made.text
        return dict(made.json())

    orders = endpoint("ok/orders", "Order service", event_types=["order.created", "order.paid"])
    endpoint("slow/180/ledger", "Ledger (slow)", headers={"X-Team": "finance"})
    flaky = endpoint("flaky/2/invoices", "Invoice mailer", event_types=["invoice.paid"])
    crm = endpoint("fail/crm", "Legacy CRM", event_types=["customer.updated"])
    events = []
    for n in range(12):
        for event_type, payload in (
            ("order.created", {"order_id": f"ord_{1000 + n}", "amount": 1200 + 75 * n, "currency": "EUR"}),
            ("order.paid", {"order_id": f"ord_{1000 + n}", "method": "card"}),
        ):
            events.append(
                api.post("/v1/events", json={"event_type": event_type, "payload": payload}, headers=key)
            )
    invoice = api.post(
        "/v1/events", json={"event_type": "invoice.paid", "payload": {"invoice": "inv_77"}}, headers=key
    ).json()
    for n in range(3):
        body = {"event_type": "customer.updated", "payload": {"customer": f"cus_{n}", "plan": "pro"}}
        api.post("/v1/events", json=body, headers=key)

    def settled() -> bool:
        page = api.get("/v1/deliveries", params={"limit": 200}, headers=key).json()["data"]
        return bool(page) and all(d["status"] in ("succeeded", "dead") for d in page)

    poll(settled, timeout_s=120, interval_s=0.5, what="every delivery to settle")
    return {"tenant": tenant, "orders": orders, "flaky": flaky, "crm": crm, "invoice": invoice}


def shoot(base_url: str, data: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base_url, viewport={"width": WIDTH, "height": 760})
        page = context.new_page()
        page.goto("/console/login")
        page.get_by_label("Admin token or API key").fill(data["tenant"]["api_key"])
        page.keyboard.press("Enter")
        page.wait_for_url("**/console/endpoints")
        page.screenshot(path=OUT / "console-endpoints.png")
        page.goto(f"/console/endpoints/{data['orders']['id']}")
        page.screenshot(path=OUT / "console-endpoint.png")
        page.goto("/console/events")
        page.screenshot(path=OUT / "console-events.png")
        (flaky,) = [d for d in data["invoice"]["deliveries"] if d["endpoint_id"] == data["flaky"]["id"]]
        page.goto(f"/console/deliveries/{flaky['id']}")
        page.locator("article.attempt").last.get_by_text("Request headers sent").click()
        page.screenshot(path=OUT / "console-attempts.png", full_page=True)
        page.goto("/console/dead-letters")
        page.locator('input[name="ids"]').first.check()
        page.screenshot(path=OUT / "console-dead-letters.png")
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc = RedisProc(Path(tmp)).start()
        receiver = Receiver().start()
        server = ApiServer(api_config(redis_proc.url)).start()
        proc = worker(redis_proc.url, Path(tmp) / "worker.log")
        try:
            with httpx.Client(base_url=server.url, timeout=30) as api:
                data = seed(api, receiver)
            shoot(server.url, data)
        finally:
            proc.kill()
            proc.wait()
            server.stop()
            receiver.stop()
            redis_proc.stop()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
