"""The console's safety in a real Chromium: a hostile callback body shown as text with
nothing in it run, state changes refused without the CSRF token, and every page usable with
the keyboard alone."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.async_api import Page, expect

from tests.console.conftest import Console
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

#: What a hostile sender (or a compromised bucket name) puts in every field it can.
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=document.title='pwned'>"

#: Every focusable control on the page, with its accessible name as a screen reader gets it.
_CONTROLS = """() => [...document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex="-1"])'
)].filter(e => e.offsetParent !== null || e === document.activeElement).map(e => {
  const label = e.getAttribute('aria-label')
    || (e.labels && e.labels.length ? e.labels[0].textContent : '')
    || e.textContent || e.getAttribute('title') || '';
  return {tag: e.tagName, name: label.trim()};
})"""
_FOCUSED = """() => { const e = document.activeElement;
  const label = e.getAttribute('aria-label')
    || (e.labels && e.labels.length ? e.labels[0].textContent : '')
    || e.textContent || e.getAttribute('title') || '';
  return {tag: e.tagName, name: label.trim()}; }"""


async def test_a_hostile_body_is_shown_as_text_and_nothing_in_it_runs(
    console: Console, page: Page
) -> None:
    before = await console.broker.count(console.dead("flaky"))
    await console.post_job(HOSTILE)  # parses: flaky parks it, its job id hostile
    garbage = f"<Response><JobId>{HOSTILE}</JobId><Broken>".encode()
    assert (await console.system.post(garbage, "application/xml")).status == 200  # unparsed
    await eventually(lambda: console.broker.count_is(console.dead("flaky"), before + 1))
    await eventually(lambda: console.broker.count_is(console.broker.topology.unparsed, 1))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await console.login(page)
    dead, unparsed = console.dead("flaky"), console.broker.topology.unparsed
    pages = {  # the page, and whether the hostile text is on it (a raw body has no job id)
        f"/parked/{dead}?job_id={quote(HOSTILE)}": True,
        f"/trace?q={quote(HOSTILE)}": True,
        f"/parked/{unparsed}": False,
    }
    for path, shown in pages.items():
        response = await page.goto(console.url + path)
        assert response is not None
        assert response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        if shown:
            await expect(page.get_by_text(HOSTILE).first).to_be_visible()  # as text
    # each message's own page: the event, the raw body and the headers
    for queue in (dead, unparsed):
        await page.goto(f"{console.url}/parked/{queue}")
        await page.locator("table.parked tbody tr[data-message] a").first.click()
        await expect(page.locator("pre.body")).to_contain_text(HOSTILE)
        await console.shot(page, "hostile")
        assert await page.evaluate("document.querySelectorAll('script').length") == 1  # htmx
        assert await page.evaluate("document.querySelectorAll('img').length") == 0
    assert await page.title() != "pwned"
    assert dialogs == []


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    console: Console, page: Page
) -> None:
    await console.login(page)  # the session cookie rides along: only the token is missing
    forms: list[dict[str, str | float | bool]] = [{}, {"csrf": "0" * 64}]
    for form in forms:
        response = await page.request.post(
            console.url + "/consumers/thumbs/pause", form=form, max_redirects=0
        )
        assert response.status == 403
        assert "CSRF" in await response.text()
    response = await page.request.post(
        f"{console.url}/parked/{console.dead('flaky')}/do", form={"do": "purge:filter"}
    )
    assert response.status == 403
    await page.goto(console.url + "/consumers/thumbs")
    await expect(page.locator("#consumer-state")).to_have_text("running")
    ops = console.service.ops
    assert ops is not None
    assert [v.state for v in await ops.consumers() if v.name == "thumbs"] == ["running"]


@pytest.mark.parametrize("path", ["/", "/consumers/thumbs", "/parked", "/trace", "/replay"])
async def test_every_control_is_reachable_with_the_keyboard_and_labelled(
    console: Console, page: Page, path: str
) -> None:
    await console.login(page)
    await page.goto(console.url + path)
    controls = await page.evaluate(_CONTROLS)
    assert controls, "a page without a control"
    unnamed = [c for c in controls if not c["name"]]
    assert unnamed == [], f"controls without an accessible name on {path}: {unnamed}"
    reached = []
    for _ in range(len(controls) + 3):
        await page.keyboard.press("Tab")
        reached.append(await page.evaluate(_FOCUSED))
    missing = [c for c in controls if c not in reached]
    assert missing == [], f"not reachable with Tab on {path}: {missing}"


async def test_a_consumer_is_paused_and_resumed_with_the_keyboard_alone(
    console: Console, page: Page
) -> None:
    await console.login(page)
    await page.goto(console.url + "/consumers/thumbs")
    for _ in range(40):
        await page.keyboard.press("Tab")
        if (await page.evaluate(_FOCUSED))["name"] == "Pause":
            break
    else:
        raise AssertionError("Tab never reached Pause")
    await page.keyboard.press("Enter")
    await expect(page.locator("#consumer-state")).to_have_text("paused")
    await page.get_by_role("button", name="Resume").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#consumer-state")).to_have_text("running")


@pytest.mark.parametrize("path", ["/", "/consumers/thumbs", "/parked", "/trace?q=x", "/replay"])
async def test_a_phone_sized_screen_needs_no_sideways_scrolling_of_the_page(
    console: Console, page: Page, path: str
) -> None:
    await console.login(page)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(console.url + path)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{path} is {overflow}px wider than a phone's screen"
    if path == "/":
        await console.shot(page, "phone")
