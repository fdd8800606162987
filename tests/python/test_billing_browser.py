"""Billing in a real browser: Playwright driving Debian's Chromium against
`modelrouter up` without demo credits. Sign up, deposit $10 through the
(simulated) Stripe Checkout page, see $10.00 and the $0.40 fee, save a card,
turn auto-recharge on, spend under the threshold with premium traffic
through the official `openai` SDK, and see the recharge appear. Every page
is screenshotted into test-artifacts/billing and must render without
console errors.
"""

import pathlib
import secrets

import openai

from test_dashboard_browser import CHROMIUM, browser_page, until  # noqa: F401  (fixture)

ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts" / "billing"
MESSAGES = [{"role": "user", "content": "Write one sentence about routers."}]
CARD = "4242 4242 4242 4242"


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def balance(page, url):
    page.goto(f"{url}/billing")
    return page.locator("#balance").inner_text()


def test_deposit_save_card_auto_recharge(paying_up, browser_page):
    url, _, _ = paying_up
    page, problems = browser_page
    email = f"pay-{secrets.token_hex(4)}@example.com"
    page.goto(f"{url}/signup")
    page.fill("#email", email)
    page.fill("#password", "a long billing password")
    page.fill("#account_name", "Paying Co")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/login?notice=signed_up")
    page.fill("#email", email)
    page.fill("#password", "a long billing password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/dashboard")

    assert balance(page, url) == "$0.00"
    shot(page, "01-billing-empty")
    page.fill("#amount", "10")
    page.click("form[action='/billing/deposit'] button")
    assert page.locator("#credits").inner_text() == "$10.00"
    assert page.locator("#fee").inner_text() == "$0.40"
    assert page.locator("#total").inner_text() == "$10.40"
    shot(page, "02-deposit-review")
    page.click("text=Pay $10.40")
    page.wait_for_selector("#card")
    assert "$10.40" in page.locator("#total").inner_text()
    shot(page, "03-checkout")
    page.fill("#card", CARD)
    page.click("#submit")
    page.wait_for_url(f"{url}/billing?deposit=paid")
    assert until(lambda: balance(page, url) == "$10.00"), "the deposit reaches the balance"
    history = page.locator("#history").inner_text()
    assert "deposit" in history and "0.40" in history
    shot(page, "04-deposited")

    page.click("form[action='/billing/card'] button")
    page.wait_for_selector("#card")
    page.fill("#card", CARD)
    page.click("#submit")
    page.wait_for_url(f"{url}/billing?card=saved")
    assert until(lambda: balance(page, url) and page.locator("#card").count() == 1), "the saved card shows"
    assert "4242" in page.locator("#card").inner_text()

    form = page.locator("form[action='/billing/auto-recharge']")
    form.locator("input[name=enabled]").check()
    form.locator("#threshold").fill("10")
    form.locator("#recharge-amount").fill("10")
    form.locator("button").click()
    page.wait_for_url(f"{url}/billing")
    assert page.locator("#auto-recharge-state").inner_text() == "on"
    shot(page, "05-auto-recharge-on")

    page.goto(f"{url}/keys")
    page.fill("input[name=name]", "spend")
    page.click("text=Create key")
    key = page.locator("#new-key").inner_text().strip()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)

    def served():
        try:
            return bool(client.chat.completions.create(model="premium", messages=MESSAGES).choices)
        except openai.APIStatusError:
            return False

    assert until(served), "premium traffic is served from the deposit"

    def recharged():
        page.goto(f"{url}/billing")
        return "auto-recharge" in page.locator("#history").inner_text()

    assert until(recharged, seconds=20), "the recharge appears in the history"
    # The history line and the balance come from the ledger's projection a
    # moment apart: wait (bounded) for the balance too.
    assert until(lambda: float((balance(page, url) or "$0").lstrip("$")) > 19, seconds=20), balance(page, url)
    shot(page, "06-recharged")
    assert problems == [], problems
