"""The dashboard in a real browser: Playwright driving Debian's Chromium
(headless) against `modelrouter up`. Sign up, create a key, call the API
with it through the official `openai` SDK (plain and streamed), see the
requests and their cost on the dashboard, block the provider that served
them, revoke the key. Every page is screenshotted into test-artifacts/
(git-ignored) and must render without console errors.
"""

import os
import pathlib
import secrets
import time

import openai
import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
MESSAGES = [{"role": "user", "content": "Write one sentence about routers."}]


@pytest.fixture()
def browser_page():
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        yield page, problems
        browser.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def until(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_sign_up_key_calls_cost_block_revoke(router, browser_page, smtp):
    url, _ = router
    page, problems = browser_page
    email = f"pw-{secrets.token_hex(4)}@example.com"

    page.goto(f"{url}/signup")
    page.fill("#email", email)
    page.fill("#password", "a long browser password")
    page.fill("#account_name", "Browser Test Co")
    shot(page, "01-signup")
    page.click("button[type=submit]")
    # Sign-up answers the same for any email, then the person logs in.
    page.wait_for_url(f"{url}/login?notice=signed_up")
    page.fill("#email", email)
    page.fill("#password", "a long browser password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/dashboard")

    def credited():
        page.reload()
        return page.locator("#balance").inner_text() == "$25.00"

    assert until(credited), "the demo credits reach the dashboard"
    shot(page, "02-dashboard-new")

    page.goto(f"{url}/keys")
    page.fill("input[name=name]", "browser")
    page.click("text=Create key")
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("mr_sk_")
    shot(page, "03-key-created")

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    # A paid tier, so the request has a cost to find on the dashboard.
    raw = client.chat.completions.with_raw_response.create(model="premium", messages=MESSAGES)
    completion = raw.parse()
    provider = raw.headers["x-model-router-provider"]
    cost = raw.headers["x-model-router-cost"]
    assert completion.choices[0].message.content
    assert float(cost) > 0
    stream = client.chat.completions.create(model="premium", messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    streamed_id = chunks[0].id

    def requests_shown():
        page.goto(f"{url}/dashboard")
        rows = page.locator("#recent tr").count()
        return rows >= 3  # header + two requests

    assert until(requests_shown), "both requests reach the dashboard"
    body = page.content()
    assert f"${cost}" in body, f"the request's cost ${cost} is on the dashboard"
    assert page.locator("#recent").inner_text().count(provider) >= 1
    assert page.locator("#usage-chart rect").count() == 14
    assert streamed_id  # the SDK parsed the stream's ids
    shot(page, "04-dashboard-usage")

    # Attribution, then the request log: filter by tag, open the request,
    # download the filtered set as CSV, and see its spend by tag.
    tagged = client.chat.completions.with_raw_response.create(
        model="economy",
        messages=MESSAGES,
        user="pw-end-user",
        metadata={"env": "browser"},
        extra_headers={"X-Model-Router-Tags": "team=browser"},
    )
    tagged_id = tagged.headers["x-request-id"]

    def tagged_logged():
        page.goto(f"{url}/requests")
        page.fill("#filters input[name=tag]", "team=browser")
        page.click("#filters button[type=submit]")
        page.wait_for_load_state()
        return page.locator("#requests tr").count() == 2  # header + the one

    assert until(tagged_logged), "the tagged request is in the filtered log"
    row = page.locator("#requests tr").nth(1).inner_text()
    assert "pw-end-user" in row and "env=browser" in row, row
    shot(page, "04b-requests-filtered")
    with page.expect_download() as download:
        page.click("#export-csv")
    csv_lines = pathlib.Path(download.value.path()).read_text().splitlines()
    assert csv_lines[0].startswith("time,request_id,"), csv_lines
    assert len(csv_lines) == 2 and tagged_id in csv_lines[1], csv_lines
    page.click(f"a[href='/requests/{tagged_id}']")
    page.wait_for_url(f"{url}/requests/{tagged_id}")
    assert "answered" in page.locator("#attempts").inner_text()
    assert "team=browser" in page.locator("#request-detail").inner_text()
    shot(page, "04c-request-detail")
    page.goto(f"{url}/usage?by=tag")
    assert "team=browser" in page.locator("#breakdown").inner_text()
    shot(page, "04d-usage-by-tag")

    page.goto(f"{url}/models")
    assert page.locator("#models tr").count() > 10
    shot(page, "05-models")
    page.goto(f"{url}/limits")
    shot(page, "06-limits")
    page.goto(f"{url}/members")
    shot(page, "07-members")

    page.goto(f"{url}/providers")
    page.locator(f"form[action='/providers/{provider}'] button").click()
    page.wait_for_url(f"{url}/providers")
    row = page.locator("#providers tr", has_text=f"({provider})")
    assert "blocked" in row.inner_text()
    shot(page, "08-provider-blocked")
    raw = client.chat.completions.with_raw_response.create(model="premium", messages=MESSAGES)
    assert raw.headers["x-model-router-provider"] != provider, "the next request skips the blocked provider"

    # An alert on a key budget: the rule, the budget, one paid request;
    # the alert shows on the dashboard and arrives by email, and the key
    # is refused once its budget is spent.
    page.goto(f"{url}/alerts")
    page.fill("#alert-rules input[name=key_budget_percents]", "50")
    page.fill("#alert-rules input[name=emails]", "ops@example.com")
    page.click("#alert-rules button[type=submit]")
    page.wait_for_url(f"{url}/alerts")
    page.goto(f"{url}/keys")
    page.fill("input[name=name]", "budgeted")
    page.click("text=Create key")
    budgeted = openai.OpenAI(base_url=f"{url}/v1", api_key=page.locator("#new-key").inner_text().strip(), max_retries=0)
    page.goto(f"{url}/keys")
    # The newest key is listed first.
    page.locator("#keys summary", has_text="Set limits").first.click()
    page.fill("form.key-limits input[name=budget]", "0.000001")
    page.select_option("form.key-limits select[name=budget_period]", "daily")
    shot(page, "08b-key-budget")
    page.click("form.key-limits button[type=submit]")
    page.wait_for_url(f"{url}/keys")
    assert "$0.000001 daily" in page.locator("#keys").inner_text()
    budgeted.chat.completions.create(model="premium", messages=MESSAGES)

    def alert_shown():
        page.goto(f"{url}/dashboard")
        return page.locator("#alerts").count() == 1 and "budget" in page.locator("#alerts").inner_text()

    assert until(alert_shown, seconds=15), "the key-budget alert appears on the dashboard"
    shot(page, "08c-alert")
    assert until(lambda: any("ops@example.com" in to and "budget" in text for to, text in smtp.messages), seconds=15), smtp.messages

    def budget_refuses():
        try:
            budgeted.chat.completions.create(model="premium", messages=MESSAGES)
            return False
        except openai.RateLimitError as e:
            return e.code == "key_budget_exceeded"

    assert until(budget_refuses, seconds=5), "the spent budget refuses the key"

    page.goto(f"{url}/keys")
    # The first key (listed last): the one the rest of the test uses.
    page.locator("#keys button", has_text="Revoke").last.click()
    page.wait_for_url(f"{url}/keys")
    assert "revoked" in page.locator("#keys").inner_text()
    shot(page, "09-key-revoked")

    def refused():
        try:
            client.chat.completions.create(model="economy", messages=MESSAGES)
            return False
        except openai.AuthenticationError:
            return True

    assert until(refused, seconds=1.0), "the revoked key is refused within 1 s"
    assert problems == [], problems
