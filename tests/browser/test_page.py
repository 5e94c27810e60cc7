"""The back-office page in a real headless Chromium, against a running projector and API.

The list, the filter, the paging, the detail's timeline, a live update without a
reload, the token prompt, the socket's drop and reconnection, and the headers. What
the page must show comes from the pure fold of the stream's bytes.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime

import pytest

from schema.events import EventParseError, parse_message
from tests.browser.cdp import Page
from tests.browser.conftest import ODD_DELIVERY, TOKEN, Stack, screenshot
from tests.helpers import make_event

PAGE_SIZE = 25  # app.js PAGE_SIZE
ROWS = "Array.from(document.querySelectorAll('#rows tr')).map(tr => tr.dataset.id)"
ROW_STATES = ("Array.from(document.querySelectorAll('#rows tr .state'))"
              ".map(s => s.dataset.state)")


def open_list(page: Page, stack: Stack) -> list[str]:
    page.goto(stack.url + "/")
    page.wait_for("document.querySelectorAll('#rows tr').length > 0", timeout=15,
                  message="the list to render")
    page.wait_for("document.getElementById('live-status').dataset.state === 'live'",
                  timeout=15, message="the live socket")
    return list(page.evaluate(ROWS))


def test_list_renders_the_right_count(stack: Stack, page: Page) -> None:
    expected = stack.expected()
    ids = open_list(page, stack)
    total = page.evaluate("document.getElementById('total').textContent")
    print(f"list: {total} deliveries, {len(ids)} rows on the first page")
    assert int(total) == len(expected)
    assert len(ids) == min(PAGE_SIZE, len(expected))
    newest = sorted(expected.values(), key=lambda r: (-r["last_event_at"].timestamp(),
                                                      r["delivery_id"]))
    assert ids == [r["delivery_id"] for r in newest[:PAGE_SIZE]]
    page.wait_for("document.querySelectorAll('#partitions tr').length === 1",
                  message="the projection status")
    screenshot(page, "list.png")


def test_filtering_by_state_changes_the_list(stack: Stack, page: Page) -> None:
    states = Counter(row["state"] for row in stack.expected().values())
    open_list(page, stack)
    for state in ("DELIVERED", "CANCELLED"):
        page.set_value("#filter-state", state)
        page.wait_for(f"document.getElementById('total').textContent === '{states[state]}'",
                      message=f"the count of {state}")
        shown = page.wait_for(
            f"(() => {{ const s = {ROW_STATES}; return s.length === "
            f"{min(PAGE_SIZE, states[state])} && s; }})()",
            message=f"the rows of {state}")
        print(f"filter {state}: {states[state]} deliveries")
        assert set(shown) == {state}
    assert states["DELIVERED"] != states["CANCELLED"] != len(stack.expected())


def test_paging_reaches_the_last_page(stack: Stack, page: Page) -> None:
    expected = stack.expected()
    seen = open_list(page, stack)
    pages = 1
    while page.evaluate("document.getElementById('rows').dataset.last") != "true":
        page.click("#next-page")
        pages += 1
        page.wait_for(f"document.getElementById('rows').dataset.page === '{pages}'",
                      message=f"page {pages}")
        seen += page.evaluate(ROWS)
        assert pages <= 20, "paging does not end"
    print(f"paging: {pages} pages, {len(seen)} rows")
    assert pages == math.ceil(len(expected) / PAGE_SIZE)
    assert page.evaluate("document.getElementById('next-page').disabled") is True
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    page.click("#first-page")
    page.wait_for("document.getElementById('rows').dataset.page === '1'", message="page 1")


def _fold_order(stack: Stack, delivery_id: str) -> list[tuple[str, str, bool]]:
    events = {}
    for line in stack.lines:
        try:
            event = parse_message(line, None)
        except EventParseError:
            continue
        if event.delivery_id == delivery_id:
            events.setdefault(event.event_id, event)  # the first copy wins
    ordered = sorted(events.values(), key=lambda e: e.sort_key)
    return [(e.event_id, e.event_type, e.known) for e in ordered]


def _timeline(page: Page) -> list[tuple[str, str, bool]]:
    return [tuple(x) for x in page.evaluate(
        "Array.from(document.querySelectorAll('#timeline li')).map(li => "
        "[li.dataset.eventId, li.dataset.type, !li.classList.contains('unknown')])")]


def test_a_delivery_shows_its_timeline_in_fold_order(stack: Stack, page: Page) -> None:
    expected = _fold_order(stack, ODD_DELIVERY)
    open_list(page, stack)
    page.click(f"#rows tr[data-id='{ODD_DELIVERY}']")
    page.wait_for(f"document.querySelectorAll('#timeline li').length === {len(expected)}",
                  message="the timeline")
    shown = _timeline(page)
    print("timeline:", [t for _, t, _ in shown])
    assert shown == expected
    assert [t for _, t, _ in shown] == ["DeliveryCreated", "DeliveryRiderAssigned",
                                        "DeliveryRouteOptimised", "DeliveryPickedUp",
                                        "DeliveryCompleted"]
    unknown = page.evaluate("document.querySelector('#timeline li.unknown .tag').textContent")
    assert unknown == "unknown type"
    assert page.evaluate("document.querySelector('#detail-state .state').dataset.state") \
        == "DELIVERED"

    # A delivery of the simulated stream too, with its late and repeated events.
    busiest = max((r for r in stack.expected().values() if r["delivery_id"] != ODD_DELIVERY),
                  key=lambda r: (r["event_count"], r["delivery_id"]))
    busy_id = busiest["delivery_id"]
    page.set_value("#filter-rider", busiest["rider_id"] or "")
    page.click("#filters button[type=submit]")
    page.wait_for(f"!!document.querySelector(\"#rows tr[data-id='{busy_id}']\")",
                  message=f"{busy_id} in the list")
    page.click(f"#rows tr[data-id='{busy_id}']")
    order = _fold_order(stack, busy_id)
    page.wait_for(f"document.getElementById('detail').dataset.id === '{busy_id}' && "
                  f"document.querySelectorAll('#timeline li').length === {len(order)}",
                  message=f"the timeline of {busy_id}")
    assert _timeline(page) == order
    page.set_value("#rider-id", busiest["rider_id"] or "")
    page.set_value("#rider-from", "2026-11-24")
    page.set_value("#rider-to", "2026-11-26")
    page.click("#rider-form button[type=submit]")
    page.wait_for("document.querySelectorAll('#rider-chart rect').length === 3 * 3 + 3",
                  message="the rider's bar chart")
    page.resize(1400, 1500)  # the whole side column: detail, status, chart
    screenshot(page, "detail.png")


def test_a_new_event_appears_on_the_open_page_within_two_seconds(
    stack: Stack, page: Page
) -> None:
    open_list(page, stack)
    page.click(f"#rows tr[data-id='{ODD_DELIVERY}']")
    page.wait_for("document.querySelectorAll('#timeline li').length === 5",
                  message="the timeline")
    page.evaluate("window.__sameDocument = true")
    now = datetime.now(UTC).isoformat()
    new_id = f"D-LIVE-{int(time.time())}"
    late = make_event("DeliveryNoteAdded", ODD_DELIVERY, now, sequence=6, data={"note": "hi"})
    created = make_event("DeliveryCreated", new_id, now, sequence=1,
                         data={"orderId": "O-LIVE", "shopId": "S-001"})

    started = time.monotonic()
    stack.append(late, created)
    row = page.wait_for(f"!!document.querySelector(\"#rows tr[data-id='{new_id}']\")",
                        timeout=5, message="the new delivery on the list")
    row_seconds = time.monotonic() - started
    event = page.wait_for(
        f"!!document.querySelector(\"#timeline li[data-event-id='{late['eventId']}']\")",
        timeout=5, message="the new event on the open timeline")
    event_seconds = time.monotonic() - started
    print(f"live: new delivery on the list after {row_seconds:.2f} s, "
          f"new event on the open timeline after {event_seconds:.2f} s")
    assert row and event, "the page did not show the appended events"
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert new_id in page.evaluate(ROWS)[:2]  # on top (it ties with the other's time)
    assert row_seconds < 2.0 and event_seconds < 2.0
    page.wait_for(f"document.getElementById('total').textContent === "
                  f"'{len(stack.expected())}'", timeout=3, message="the count to follow")
    page.wait_for(f"document.querySelector('#partitions td:nth-child(3)').textContent === "
                  f"'{len(stack.lines)}'", timeout=3, message="the status panel to follow")


def test_with_tokens_and_no_token_the_page_asks_for_one_and_shows_no_data(
    stack: Stack, page: Page
) -> None:
    page.goto(stack.token_url + "/")
    page.wait_for("!document.getElementById('auth').hidden", message="the token prompt")
    message = page.evaluate("document.getElementById('auth-message').textContent")
    print(f"prompt: {message}")
    assert "bearer token" in message
    assert page.evaluate("document.getElementById('app').hidden") is True
    assert page.evaluate("document.querySelectorAll('#rows tr, #timeline li, #partitions tr')"
                         ".length") == 0
    assert "D-0" not in page.evaluate("document.body.innerText")

    page.set_value("#token", "not-the-token")
    page.click("#auth-form button[type=submit]")
    page.wait_for("document.getElementById('auth-message').textContent.includes('refused')",
                  message="the refusal")
    assert page.evaluate("document.querySelectorAll('#rows tr').length") == 0

    page.set_value("#token", TOKEN)  # the right one: the data comes, live too
    page.click("#auth-form button[type=submit]")
    page.wait_for(f"document.getElementById('total').textContent === "
                  f"'{len(stack.expected())}'", message="the list with the token")
    page.wait_for("document.getElementById('live-status').dataset.state === 'live'",
                  message="the socket with the token")
    assert page.evaluate(f"sessionStorage.getItem('queryApiToken') === '{TOKEN}'")


def test_headers_and_a_strict_content_security_policy(stack: Stack, page: Page) -> None:
    for path in ("/", "/ui/app.js", "/ui/app.css"):
        with urllib.request.urlopen(stack.url + path, timeout=5) as response:
            headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    with pytest.raises(urllib.error.HTTPError) as refused:  # the data still needs the token
        urllib.request.urlopen(urllib.request.Request(
            stack.token_url + "/graphql", data=json.dumps({"query": "{ projectionStatus "
                                                           "{ generation } }"}).encode(),
            headers={"Content-Type": "application/json"}), timeout=5)
    assert refused.value.code == 401

    open_list(page, stack)  # the page itself runs under the policy without a complaint
    assert not page.problems
    injected = page.evaluate(
        "(() => { const s = document.createElement('script');"
        " s.textContent = 'window.__inline = 1'; document.body.append(s);"
        " return window.__inline === undefined; })()")
    assert injected, "an inline script ran: the policy is not enforced"
    assert any("Content Security Policy" in p for p in page.problems)
    page.problems.clear()


def test_the_page_says_when_the_socket_drops_and_reconnects(stack: Stack, page: Page) -> None:
    open_list(page, stack)
    page.evaluate("window.__sameDocument = true")
    stack.stop("api")
    started = time.monotonic()
    text = page.wait_for(
        "(() => { const s = document.getElementById('live-status');"
        " return s.dataset.state === 'down' && s.textContent; })()",
        timeout=5, message="the page to say the socket dropped")
    print(f"dropped: '{text}' after {time.monotonic() - started:.2f} s")
    assert "reconnecting" in text
    # A second attempt fails too, and the page waits longer before the next one.
    page.wait_for(
        "/reconnecting in ([2-9]|[1-9][0-9]) s/.test("
        "document.getElementById('live-status').textContent)",
        timeout=10, message="the page to back off after a second failed attempt")
    stack.start_api("api", stack.port)
    page.wait_for("document.getElementById('live-status').dataset.state === 'live'",
                  timeout=20, message="the page to reconnect")
    print(f"reconnected after {time.monotonic() - started:.2f} s")
    assert page.evaluate("window.__sameDocument === true")
    page.problems[:] = [p for p in page.problems if "WebSocket" not in p]
