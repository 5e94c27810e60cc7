"""The detail's time slider and lineage on hover (issue #12), in headless Chromium.

The slider's stops are the moments the delivery's events occurred; at each, the
page must show the pure fold of the events with ``occurredAt`` at or before it
(computed here from the stream's bytes), and hovering a field must point at the
event that set it last (``Delivery.lineage``).
"""

from __future__ import annotations

import json

from schema.events import Event, EventParseError, parse_message
from schema.fold import fold, lineage, steps
from tests.browser.cdp import Page
from tests.browser.conftest import ODD_DELIVERY, Stack, screenshot
from tests.helpers import wait_until


def _events(stack: Stack, delivery_id: str) -> list[Event]:
    found: dict[str, Event] = {}
    for line in stack.lines:
        try:
            event = parse_message(line, None)
        except EventParseError:
            continue
        if event.delivery_id == delivery_id:
            found.setdefault(event.event_id, event)  # the first copy wins
    return list(found.values())


def test_the_time_slider_and_lineage_on_hover(stack: Stack, page: Page) -> None:
    wait_until(stack.caught_up, timeout=30, message="the projector to catch up")
    events = _events(stack, ODD_DELIVERY)
    moments = sorted({e.occurred_at for e in events})
    page.goto(stack.url + "/")
    page.wait_for(f"!!document.querySelector(\"#rows tr[data-id='{ODD_DELIVERY}']\")",
                  timeout=15, message="the list")
    page.click(f"#rows tr[data-id='{ODD_DELIVERY}']")
    page.wait_for(f"document.querySelectorAll('#timeline li').length === {len(events)} && "
                  f"document.getElementById('detail-asof').max === '{len(moments)}'",
                  message="the detail and its slider")

    for index, moment in enumerate(moments):
        then = fold([e for e in events if e.occurred_at <= moment])
        assert then is not None
        page.set_value("#detail-asof", str(index))
        page.wait_for(
            "document.getElementById('detail').classList.contains('past') && "
            f"document.querySelectorAll('#timeline li').length === {then.event_count} && "
            "document.querySelector('#detail-state .state').dataset.state === "
            f"{json.dumps(then.state.value)}",
            message=f"the delivery as of {moment.isoformat()}")
        label = page.evaluate("document.getElementById('detail-asof-label').textContent")
        assert label.startswith("as of"), label
        print(f"as of {moment.isoformat()}: {then.state.value}, {then.event_count} events")
        if index == 1:
            page.resize(1400, 1100)
            screenshot(page, "detail-as-of.png")

    page.set_value("#detail-asof", str(len(moments)))  # the last stop: now
    page.wait_for("!document.getElementById('detail').classList.contains('past') && "
                  f"document.querySelectorAll('#timeline li').length === {len(events)}",
                  message="the delivery now")
    assert page.evaluate("document.getElementById('detail-asof-label').textContent") == "now"

    set_by = {field: step.event for field, step in lineage(steps(events)).items()}
    for field, name in (("state", "state"), ("rider_id", "riderId"), ("created_at", "createdAt")):
        event = set_by[field]
        dd = f"#detail-fields dd[data-field='{name}']"
        assert page.evaluate(f"document.querySelector(\"{dd}\").dataset.setBy") == event.event_id
        title = page.evaluate(f"document.querySelector(\"{dd}\").title")
        assert title.startswith(f"set by {event.event_type} {event.event_id}"), title
        page.evaluate(f"document.querySelector(\"{dd}\")"
                      ".dispatchEvent(new MouseEvent('mouseenter'))")
        assert page.evaluate("Array.from(document.querySelectorAll('#timeline li.source'))"
                             ".map(li => li.dataset.eventId)") == [event.event_id]
        page.evaluate(f"document.querySelector(\"{dd}\")"
                      ".dispatchEvent(new MouseEvent('mouseleave'))")
    # a field no event set has no lineage
    assert page.evaluate(
        "document.querySelector(\"#detail-fields dd[data-field='cancelledAt']\").dataset.setBy"
    ) is None
