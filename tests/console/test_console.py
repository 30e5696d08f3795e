"""The console in a real Chromium against a running system on the real broker: log in, watch
the overview's counts move, find a parked message by job id and replay it, purge with a
confirmation, pause and resume a consumer, trace a job that was retried then parked."""

from __future__ import annotations

import asyncio
import re

import pytest
import structlog
from playwright.async_api import Page, expect

from tests.console.conftest import Console
from tests.support import console_consumers
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def _parked_job(console: Console, job_id: str) -> None:
    """Post a job that ``flaky`` fails twice and parks (``thumbs`` handles it)."""
    before = await console.broker.count(console.dead("flaky"))
    await console.post_job(job_id)
    await eventually(lambda: console.broker.count_is(console.dead("flaky"), before + 1), timeout=20)


async def test_login_sets_a_strict_http_only_session_and_a_wrong_token_is_refused(
    console: Console, page: Page
) -> None:
    await page.goto(console.url + "/parked")
    await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)parked$"))
    await page.get_by_label("Token").fill("not-the-token-at-all")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await console.shot(page, "login")
    await page.get_by_label("Token").fill("s3cret-0123456789abcdef")
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(console.url + "/parked")  # where it was going
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "cf_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["expires"] > 0  # a session with an end, not for ever
    assert cookie["value"].startswith("oncall:")


async def test_the_overview_shows_the_consumers_and_their_counts_change_without_a_reload(
    console: Console, page: Page
) -> None:
    await console.login(page)
    row = page.locator("table.consumers tr[data-consumer='thumbs']")
    await expect(row.locator(".state")).to_have_text("running", timeout=10_000)
    await expect(page.locator("table.consumers tr[data-consumer='flaky']")).to_be_visible()
    status_row = page.locator(f"table.status tr[data-queue='{console.queue('thumbs')}']")
    await expect(status_row.locator(".ready")).to_have_text("0")
    # held, so the events stay counted in the queue; the page is not reloaded
    await console.service.ops.pause("test", "thumbs", None)  # type: ignore[union-attr]
    for i in range(3):
        await console.post_job(f"overview-{i}")
    await expect(status_row.locator(".ready")).to_have_text("3", timeout=15_000)
    await expect(row.locator(".state")).to_have_text("paused", timeout=15_000)
    await expect(row.locator(".ready")).to_have_text("3", timeout=15_000)
    await expect(page.locator("svg.chart").first).to_be_visible()
    await console.service.ops.resume("test", "thumbs")  # type: ignore[union-attr]
    await expect(status_row.locator(".ready")).to_have_text("0", timeout=15_000)
    await console.shot(page, "overview")


async def test_a_parked_message_found_by_job_id_is_opened_replayed_and_gone(
    console: Console, page: Page
) -> None:
    await _parked_job(console, "job-to-replay")
    await _parked_job(console, "job-to-keep")
    await console.login(page)
    await page.goto(console.url + "/parked")
    await page.get_by_role("link", name=console.dead("flaky")).click()
    await page.get_by_label("Job id").fill("job-to-replay")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.parked tbody tr[data-message]")
    await expect(rows).to_have_count(1)
    await expect(rows.locator(".reason")).to_contain_text("flaky refuses job job-to-replay")
    await console.shot(page, "parked-queue")
    await rows.get_by_role("link", name="job-to-replay").click()
    await expect(page.locator("pre.json")).to_contain_text('"job_id": "job-to-replay"')
    await expect(page.locator("pre.body")).to_contain_text('"JobId": "job-to-replay"')
    await console.shot(page, "parked-message")
    console_consumers.FAILING["flaky"] = False  # fixed: the replay will be handled
    await page.get_by_role("button", name="Replay", exact=True).click()
    await expect(page.locator("#confirm-count")).to_contain_text("replay 1 message")
    await page.get_by_role("button", name="Yes, replay 1").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"replayed 1 from {console.dead('flaky')}"
    )
    await eventually(lambda: console.broker.count_is(console.dead("flaky"), 1))
    left = await console.broker.peek(console.dead("flaky"))
    assert b"job-to-keep" in left.body  # only the one chosen went


async def test_purge_says_how_many_and_asks_first(console: Console, page: Page) -> None:
    for job in ("purge-a", "purge-b", "purge-c"):
        await _parked_job(console, job)
    await console.login(page)
    await page.get_by_role("link", name="Parked").click()
    row = page.locator(f"table.parked-counts tr[data-queue='{console.dead('flaky')}']")
    await expect(row.locator("td")).to_have_text("3")
    await console.shot(page, "parked")
    await row.get_by_role("link").click()
    await page.get_by_label("select message").nth(0).check()
    await page.get_by_label("select message").nth(2).check()
    await page.get_by_role("button", name="Purge selected").click()
    await expect(page.locator("#confirm-count")).to_contain_text("purge 2 messages")
    await console.shot(page, "parked-confirm")
    assert await console.broker.count(console.dead("flaky")) == 3  # asked, nothing done yet
    await page.get_by_role("button", name="Yes, purge 2").click()
    await expect(page.get_by_role("status")).to_have_text(f"purged 2 from {console.dead('flaky')}")
    await eventually(lambda: console.broker.count_is(console.dead("flaky"), 1))
    await expect(page.locator("table.parked tbody tr[data-message]")).to_have_count(1)


async def test_pause_then_resume_from_the_consumer_page_holds_then_delivers(
    console: Console, page: Page
) -> None:
    await console.login(page)
    await page.goto(console.url + "/consumers/thumbs")
    await expect(page.locator("#consumer-state")).to_have_text("running", timeout=10_000)
    with structlog.testing.capture_logs() as logs:
        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_role("status")).to_have_text("paused thumbs until resumed")
    # the action said once, with who and what, and counted
    said = [e for e in logs if e["event"] == "console action"]
    assert [(e["action"], e["operator"], e["consumer"]) for e in said] == [
        ("pause", "oncall", "thumbs")
    ]
    assert {e.get("by") for e in logs if e["event"] == "consumer paused"} == {"oncall"}
    await expect(page.locator("#consumer-state")).to_have_text("paused")
    await asyncio.sleep(2.5)  # every worker replica stops taking within 2 s
    for i in range(4):
        await console.post_job(f"held-{i}")
    await eventually(lambda: console.broker.count_is(console.queue("thumbs"), 4))
    await asyncio.sleep(1)
    assert console_consumers.HANDLED == []  # held in the queue, not handled
    await page.reload()
    await expect(page.locator("#consumer-ready")).to_have_text("4")
    policy = page.locator("section[aria-labelledby='policy-h']")
    await expect(policy).to_contain_text("code = Success or 0")
    await expect(policy).to_contain_text("0.2 s, 0.4 s")
    await console.shot(page, "consumer")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("status")).to_have_text("resumed thumbs")
    await eventually(lambda: len(console_consumers.HANDLED) == 4, timeout=15)
    assert sorted(console_consumers.HANDLED) == [(f"held-{i}", 1) for i in range(4)]
    assert await console.broker.count(console.queue("thumbs")) == 0
    metrics = await (await page.request.get(console.url + "/metrics")).text()
    for action in ("pause", "resume"):
        line = f'callback_fanout_console_actions_total{{action="{action}",outcome="done"}} 1.0'
        assert line in metrics


async def test_the_trace_of_a_job_retried_then_parked_links_to_its_parked_message(
    console: Console, page: Page
) -> None:
    await _parked_job(console, "job-traced")
    await console.login(page)
    await page.get_by_label("Find a job, request or key").fill("job-traced")
    await page.get_by_label("Find a job, request or key").press("Enter")
    await expect(page).to_have_url(console.url + "/trace?q=job-traced")
    attempts = page.locator("table.timeline tr.step-attempt")
    await eventually(lambda: _reloaded_count(page, attempts, 3), timeout=20)
    flaky = page.locator("table.timeline tr.step-attempt", has_text="flaky")
    await expect(flaky.locator(".outcome")).to_have_text(["retried", "parked"])
    thumbs = page.locator("table.timeline tr.step-attempt", has_text="thumbs")
    await expect(thumbs.locator(".outcome")).to_have_text(["handled"])
    await console.shot(page, "trace")
    await page.get_by_role("link", name=f"parked in {console.dead('flaky')}").click()
    await expect(page.locator("table.parked tbody tr[data-message]")).to_have_count(1)
    await expect(page.get_by_label("Job id")).to_have_value("job-traced")


async def _reloaded_count(page: Page, rows: object, n: int) -> bool:
    """The history is written in batches: reload until the page shows ``n`` rows."""
    await page.reload()
    return await page.locator("table.timeline tr.step-attempt").count() >= n


async def test_a_parked_page_reads_a_bounded_window_and_offers_a_wider_one(
    console: Console, page: Page
) -> None:
    for job in ("window-a", "window-b", "window-c"):
        await _parked_job(console, job)
    await console.login(page)
    await page.goto(f"{console.url}/parked/{console.dead('flaky')}?window=2")
    rows = page.locator("table.parked tbody tr[data-message]")
    await expect(rows).to_have_count(2)  # the first two of the queue only
    await expect(page.locator("p.count")).to_contain_text("among the first 2 of the queue")
    await page.get_by_role("link", name="look at the first 10").click()
    await expect(rows).to_have_count(3)
    assert await console.broker.count(console.dead("flaky")) == 3  # looking took nothing
