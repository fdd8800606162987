"""The official `stripe` package as referee for Stripe as `modelrouter up`
simulates it: the SDK's client drives the simulated API (Checkout Sessions
paid on the hosted page, PaymentIntents off-session with idempotency keys,
refunds, errors, paging), and every webhook the simulator delivered to the
router passes `stripe.Webhook.construct_event` with the router's secret.
"""

import json
import time
import urllib.parse
import urllib.request

import pytest
import stripe

SECRET_KEY = "sk_test_simulator"


def client(url, key=SECRET_KEY):
    return stripe.StripeClient(key, base_addresses={"api": f"{url}/sim/stripe"}, max_network_retries=0)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def pay(checkout_url, card):
    """Submits the hosted Checkout page; its HTTP status (303 when paid)."""
    body = urllib.parse.urlencode({"card": card}).encode()
    opener = urllib.request.build_opener(NoRedirect)
    try:
        return opener.open(urllib.request.Request(checkout_url, data=body)).status
    except urllib.error.HTTPError as e:
        return e.code


def deliveries(url, operator_key):
    request = urllib.request.Request(f"{url}/sim/_sim/stripe/deliveries", headers={"Authorization": f"Bearer {operator_key}"})
    return json.load(urllib.request.urlopen(request))


def checkout_params(url, customer, metadata):
    item = lambda name, cents: {"price_data": {"currency": "usd", "unit_amount": cents, "product_data": {"name": name}}, "quantity": 1}
    return {
        "mode": "payment",
        "customer": customer,
        "line_items": [item("Model Router credits", 1000), item("Deposit fee (4%)", 40)],
        "success_url": f"{url}/billing?deposit=paid",
        "cancel_url": f"{url}/billing?deposit=cancelled",
        "payment_intent_data": {"metadata": metadata},
    }


def test_the_sdk_drives_the_simulated_stripe(paying_up):
    url, _, _ = paying_up
    c = client(url)
    customer = c.v1.customers.create(params={"email": "sdk@example.com", "metadata": {"purpose": "sdk referee"}})
    assert customer.id.startswith("cus_") and customer.email == "sdk@example.com"

    session = c.v1.checkout.sessions.create(params=checkout_params(url, customer.id, {"purpose": "sdk referee"}))
    assert session.status == "open" and session.amount_total == 1040 and session.url
    assert pay(session.url, "4000 0000 0000 0002") == 402, "a declined card leaves the page open"
    assert pay(session.url, "4242 4242 4242 4242") == 303
    paid = c.v1.checkout.sessions.retrieve(session.id)
    assert paid.status == "complete" and paid.payment_status == "paid"
    intent = c.v1.payment_intents.retrieve(paid.payment_intent)
    assert intent.status == "succeeded" and intent.amount == 1040 and intent.currency == "usd"
    assert intent.metadata["purpose"] == "sdk referee"

    refund = c.v1.refunds.create(params={"payment_intent": intent.id, "amount": 100})
    assert refund.status == "succeeded" and refund.amount == 100
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        c.v1.refunds.create(params={"payment_intent": intent.id, "amount": 5000})
    assert too_much.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        c.v1.payment_intents.retrieve("pi_doesnotexist")
    assert missing.value.http_status == 404
    with pytest.raises(stripe.AuthenticationError):
        client(url, "sk_test_wrong").v1.customers.list()

    # Off-session with a saved card: the same idempotency key is the same charge.
    setup = c.v1.checkout.sessions.create(params={
        "mode": "setup", "customer": customer.id, "currency": "usd",
        "success_url": f"{url}/billing?card=saved", "cancel_url": f"{url}/billing",
    })
    assert pay(setup.url, "4242 4242 4242 4242") == 303
    setup_intent = c.v1.setup_intents.retrieve(c.v1.checkout.sessions.retrieve(setup.id).setup_intent)
    params = {"amount": 520, "currency": "usd", "customer": customer.id, "payment_method": setup_intent.payment_method,
              "off_session": True, "confirm": True}
    key = f"sdk-{time.time_ns()}"
    first = c.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    again = c.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    assert first.status == "succeeded" and again.id == first.id
    card = c.v1.payment_methods.retrieve(setup_intent.payment_method)
    assert card.card.last4 == "4242" and card.card.brand == "visa"

    # Paging: the SDK walks every page.
    ids = [i.id for i in c.v1.payment_intents.list(params={"limit": 1}).auto_paging_iter()]
    assert first.id in ids and intent.id in ids and len(ids) == len(set(ids))


def test_a_declined_off_session_charge_is_a_card_error(paying_up):
    url, _, _ = paying_up
    c = client(url)
    customer = c.v1.customers.create(params={"email": "declines@example.com"})
    setup = c.v1.checkout.sessions.create(params={
        "mode": "setup", "customer": customer.id, "currency": "usd",
        "success_url": f"{url}/billing", "cancel_url": f"{url}/billing",
    })
    assert pay(setup.url, "4000 0000 0000 0341") == 303, "this card saves, later charges are declined"
    method = c.v1.setup_intents.retrieve(c.v1.checkout.sessions.retrieve(setup.id).setup_intent).payment_method
    with pytest.raises(stripe.CardError) as declined:
        c.v1.payment_intents.create(params={"amount": 1040, "currency": "usd", "customer": customer.id,
                                            "payment_method": method, "off_session": True, "confirm": True})
    assert declined.value.code == "card_declined"


def test_every_webhook_the_router_received_passes_stripes_check(paying_up):
    url, operator_key, webhook_secret = paying_up
    c = client(url)
    customer = c.v1.customers.create(params={"email": "hooks@example.com"})
    session = c.v1.checkout.sessions.create(params=checkout_params(url, customer.id, {"purpose": "webhook referee"}))
    assert pay(session.url, "4242 4242 4242 4242") == 303
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sent = deliveries(url, operator_key)
        if any(d["type"] == "checkout.session.completed" for d in sent):
            break
        time.sleep(0.1)
    assert sent, "the simulator delivered events to the router"
    for delivery in sent:
        event = stripe.Webhook.construct_event(delivery["payload"], delivery["signature"], webhook_secret)
        assert event.type == delivery["type"] and event.id == delivery["event"]
        assert event.api_version and event.data.object.id
        # The router took it (events for payments it does not know are ignored, still 2xx).
        assert delivery["status"] == 200, delivery
    delivery = sent[-1]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery["payload"] + " ", delivery["signature"], webhook_secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery["payload"], delivery["signature"], "whsec_another")
