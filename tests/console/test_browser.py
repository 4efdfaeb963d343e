"""The console in a real browser (headless Chromium) against the emulator, the producer,
the consumer and the console, each its own process, as ``make run`` starts them.

One scenario, in the order an operator works: refused before signing in; find an event by
its Idempotency-Key and by its id; see a poison message (its body HTML and a script) in
the DLQ with the reason the consumer gave, shown as text; replay it with the consumer
stopped, and see the counts change (DLQ 1 -> 0, queue 0 -> 1) beside the consumer's
outcomes, read from its database (the console has no ``/status`` URL, as in Azure); verify
the audit chain, which now holds the replay; a request without the CSRF token is refused.
Waits are conditions (WebDriverWait), never timed assertions. Screenshots go to the test's
directory, and to ``CONSOLE_SCREENSHOTS_DIR`` when set (``docs/console/``).
"""

import asyncio
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from console.apikeys import new_console_key
from emulator.testing import run_emulator
from tests.conftest import AUDIT_QUEUE, queues_config
from tests.console.browser import chromium, require_browser
from tools.processes import ManagedProcess, free_port

pytestmark = pytest.mark.e2e

POISON_BODY = "<script>window.__pwned = 1</script><b>not bold</b>"
WAIT = 60


@dataclass
class System:
    connection_string: str
    producer_url: str
    producer_key: str
    console_url: str
    console_key: str
    consumer: ManagedProcess
    processes: list[ManagedProcess]


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    require_browser()
    producer_key = secrets.token_urlsafe(32)
    console_key, entry = new_console_key("ops", "operator")
    outbox = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    store = f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}"
    with run_emulator(queues_config()) as emulator:
        cs = emulator.connection_string
        health, producer_port, console_port = free_port(), free_port(), free_port()
        processes: list[ManagedProcess] = []
        try:
            producer = ManagedProcess(
                "producer",
                "producer",
                env={
                    "PRODUCER_SERVICEBUS_CONNECTION_STRING": cs,
                    "PRODUCER_PORT": str(producer_port),
                    "PRODUCER_DATABASE_URL": outbox,
                    "PRODUCER_API_KEYS": "e2e:" + hashlib.sha256(producer_key.encode()).hexdigest(),
                },
                log_dir=tmp_path,
            )
            processes.append(producer)
            consumer = ManagedProcess(
                "consumer",
                "consumer",
                env={
                    "CONSUMER_SERVICEBUS_CONNECTION_STRING": cs,
                    "CONSUMER_AUDIT_STORE_URL": store,
                    "CONSUMER_MAX_WAIT_TIME": "0.5",
                    "CONSUMER_HEALTH_HOST": "127.0.0.1",
                    "CONSUMER_HEALTH_PORT": str(health),
                    "CONSUMER_DELIVERY_LOG_PATH": "",
                    "CONSUMER_OUTCOME_FLUSH_INTERVAL": "1",
                },
                log_dir=tmp_path,
            )
            processes.append(consumer)
            producer_url = f"http://127.0.0.1:{producer_port}"
            producer.wait_http_ok(f"{producer_url}/healthz")
            consumer.wait_http_ok(f"http://127.0.0.1:{health}/readyz")
            console = ManagedProcess(
                "console",
                "console",
                env={
                    "CONSOLE_SERVICEBUS_CONNECTION_STRING": cs,
                    "CONSOLE_PORT": str(console_port),
                    "CONSOLE_OUTBOX_DATABASE_URL": outbox,
                    "CONSOLE_AUDIT_STORE_URL": store,
                    "CONSOLE_API_KEYS": str(entry),
                    "CONSOLE_SAMPLE_INTERVAL": "1",
                    "CONSOLE_TRACE_FILES": "producer-telemetry.jsonl,consumer-telemetry.jsonl",
                },
                log_dir=tmp_path,
            )
            processes.append(console)
            console_url = f"http://127.0.0.1:{console_port}"
            console.wait_http_ok(f"{console_url}/healthz")
            yield System(
                cs, producer_url, producer_key, console_url, console_key, consumer, processes
            )
        finally:
            for process in reversed(processes):
                process.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if target := os.environ.get("CONSOLE_SCREENSHOTS_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def until(
    driver: WebDriver, condition: Callable[[WebDriver], object], reload: bool = False
) -> None:
    """Wait for ``condition`` (reloading the page between tries when asked)."""

    def check(d: WebDriver) -> object:
        if condition(d):
            return True
        if reload:
            d.refresh()
        return False

    WebDriverWait(driver, WAIT, poll_frequency=0.5).until(check)


def text_of(driver: WebDriver, css: str) -> str:
    """The element's visible text ("" when absent, or swapped out by htmx meanwhile)."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


async def send_poison(connection_string: str) -> None:
    async with (
        ServiceBusClient.from_connection_string(connection_string) as bus,
        bus.get_queue_sender(AUDIT_QUEUE) as sender,
    ):
        message = ServiceBusMessage(
            POISON_BODY, message_id="poison-html", content_type="application/json"
        )
        await sender.send_messages(message)


def test_an_operator_works_the_console_in_a_browser(
    system: System, browser: WebDriver, tmp_path: Path
) -> None:
    base = system.console_url
    # Refused before signing in: the page is the sign-in form.
    browser.get(f"{base}/dlq")
    until(browser, lambda d: "/login" in d.current_url)
    shot(browser, tmp_path, "signin")
    browser.find_element(By.ID, "api-key").send_keys(system.console_key)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(browser, lambda d: d.current_url.endswith("/dlq"))

    # Find an event by its Idempotency-Key, then by id: processed, with trace and history.
    accepted = httpx.post(
        f"{system.producer_url}/v1/audit-events",
        headers={"X-API-Key": system.producer_key, "Idempotency-Key": "approve-INV-1042"},
        json={
            "actor": {"id": "u-42", "type": "user", "display_name": "Grace Hopper"},
            "action": "invoice.approve",
            "resource": {"type": "invoice", "id": "INV-1042"},
            "outcome": "success",
            "occurred_at": "2026-11-21T09:30:00Z",
        },
    )
    assert accepted.status_code == 202, accepted.text
    event_id = accepted.json()["id"]
    browser.get(f"{base}/events")
    browser.find_element(By.ID, "event-query").send_keys("approve-INV-1042")
    browser.find_element(By.CSS_SELECTOR, "form.search button").click()
    until(browser, lambda d: text_of(d, "#verdict").startswith("processed"), reload=True)
    assert text_of(browser, "#event-id") == event_id
    assert text_of(browser, "#event-queue") == AUDIT_QUEUE
    assert "accepted" in text_of(browser, "#history")
    assert "published" in text_of(browser, "#history")
    assert len(text_of(browser, "#trace-id")) == 32
    shot(browser, tmp_path, "event")
    browser.get(f"{base}/events?q={event_id}")
    assert text_of(browser, "#verdict") == "processed: recorded in the audit chain"

    # A poison message: the consumer dead-letters it; the DLQ page shows it with its reason.
    asyncio.run(send_poison(system.connection_string))
    browser.get(f"{base}/dlq")
    until(browser, lambda d: "InvalidJson" in text_of(d, "#dlq-audit"), reload=True)
    assert text_of(browser, "#dlq-audit .dlq-total") == "1"
    shot(browser, tmp_path, "dlq")
    browser.find_element(By.LINK_TEXT, "InvalidJson").click()
    until(browser, lambda d: "poison-html" in text_of(d, "#dlq-table"))
    browser.find_element(By.CSS_SELECTOR, "#dlq-table td a").click()
    until(browser, lambda d: text_of(d, "#dl-reason") == "InvalidJson")
    # Its body, HTML and a script, is text: nothing of it became markup or ran.
    assert text_of(browser, "#body") == POISON_BODY
    assert browser.find_elements(By.CSS_SELECTOR, "#body b, #body script") == []
    assert browser.execute_script("return window.__pwned === undefined")
    shot(browser, tmp_path, "dead-letter")
    event_page = f"{base}/events?q=poison-html"
    browser.get(event_page)
    assert text_of(browser, "#verdict") == "dead-lettered: InvalidJson"

    # Replay it with the consumer stopped, so the copy stays on the queue to be counted.
    assert system.consumer.stop() == 0
    browser.get(f"{base}/dlq/{AUDIT_QUEUE}?reason=InvalidJson")
    browser.find_element(By.CSS_SELECTOR, "#dlq-table input[type=checkbox]").click()
    browser.find_element(By.ID, "replay-selected").click()
    until(browser, lambda d: "Replay 1 dead letter(s) of audit?" in text_of(d, "h1"))
    shot(browser, tmp_path, "replay-confirm")
    browser.find_element(By.ID, "confirm-button").click()
    until(browser, lambda d: text_of(d, "#result") == "replayed 1 of 1")
    shot(browser, tmp_path, "replay-result")
    browser.get(f"{base}/flow")
    row = "#queue-counts tr:nth-child(2)"
    # The panel refreshes itself (htmx): no reload. Queue, active, scheduled, dead-lettered.
    until(browser, lambda d: text_of(d, row).split()[:4] == [AUDIT_QUEUE, "1", "0", "0"])
    # The consumer's outcomes, from its database as in Azure (no CONSOLE_CONSUMER_STATUS_URL):
    # the event completed, the poison message dead-lettered.
    until(browser, lambda d: text_of(d, f"{row} td.outcome-completed") == "1")
    assert text_of(browser, f"{row} td.outcome-dead-lettered") == "1 (InvalidJson 1)"
    shot(browser, tmp_path, "flow")
    browser.get(event_page)
    assert text_of(browser, "#verdict") == "on its queue, not processed yet (active)"

    # The audit chain: verify now; the replay is in it, done by the signed-in key.
    browser.get(f"{base}/audit")
    browser.find_element(By.ID, "verify-now").click()
    until(browser, lambda d: text_of(d, "#verification").startswith("OK:"))
    actions = text_of(browser, "#actions")
    assert "console.dlq.replay" in actions
    assert "ops" in actions
    assert "console.audit.verify" in actions
    shot(browser, tmp_path, "audit")

    # Without the CSRF token a state-changing request is refused, even signed in.
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/audit/verify', {method: 'POST', headers: {'content-type': "
        "'application/x-www-form-urlencoded'}, body: ''}).then(r => done(r.status));"
    )
    assert status == 403
    # Signed out, nothing is reachable.
    browser.delete_all_cookies()
    browser.get(f"{base}/audit")
    until(browser, lambda d: "/login" in d.current_url)
