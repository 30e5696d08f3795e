"""The trace page's rendering of `trace`'s findings: each step, the tracing UI's link when a
URL template is configured, the parked message's link and its Replay (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from types import SimpleNamespace

from callback_fanout.console.web import environment
from callback_fanout.tracing import Attempt, EventTrace, Now, Received, Trace

AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}
        self.buttons: list[str] = []
        self._href: str | None = None
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        self._href = dict(attrs).get("href") if tag == "a" else None

    def handle_data(self, data: str) -> None:
        if self._tag == "a" and self._href is not None and data.strip():
            self.links[data.strip()] = self._href
        if self._tag == "button" and data.strip():
            self.buttons.append(data.strip())


def render(found: Trace) -> _Links:
    html = (
        environment()
        .get_template("trace.html")
        .render(
            request=SimpleNamespace(query={}),
            path="/trace",
            operator="oncall",
            csrf="t",
            open_console=False,
            said=None,
            title="",
            q="job-1",
            found=found,
            window=200,
            wider=1000,
            cut=False,
        )
    )
    links = _Links()
    links.feed(html)
    return links


def test_a_trace_links_the_tracing_ui_and_the_parked_message_with_its_replay() -> None:
    event = EventTrace(
        "key-1",
        job_id="job-1",
        routing_key="TaskFinish.PicProcess.Failed",
        received=Received(AT, "req-1", "10.0.0.1", "ci", "history"),
        attempts=[Attempt(AT, "billing", 1, "parked", "RuntimeError: no", 0.01)],
        now=[Now("billing", "parked", "cb.consumer.billing.dead", "parked show ...")],
        traces={"4bf92f3577b34da6a3ce929d0e0e4736": "https://jaeger.example/trace/4bf92f"},
    )
    links = render(Trace("job-1", [event]))
    assert links.links["trace 4bf92f3577b34da6a3ce929d0e0e4736"] == (
        "https://jaeger.example/trace/4bf92f"
    )
    assert links.links["parked in cb.consumer.billing.dead"] == (
        "/parked/cb.consumer.billing.dead?job_id=job-1"
    )
    assert "Replay" in links.buttons
