"""Customer messages and pages from Jinja2 templates in lib/templates/, always in a
`SandboxedEnvironment`: a customer's name or address is data, never markup or template code.
`{{7*7}}` in a name stays text in every part (data is never re-rendered); HTML parts and pages
are autoescaped (`<script>` comes out as `&lt;script&gt;`); plain-text parts (an e-mail's text
part and subject, SMS, a Zendesk comment's `body`) are not, so "O'Neil" and a link's `&` reach
the reader as written instead of as `O&#39;Neil` and `&amp;`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def environment(strict: bool = True, html: bool = True) -> SandboxedEnvironment:
    """Messages are strict (a fact missing from the order state is an error, never ""); pages
    show what a packet has (an order the warehouse no longer holds still gets its page).
    `html=False` is for plain-text output only: nothing there is parsed as markup."""
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=html,
        undefined=StrictUndefined if strict else ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


def render_message(template: str, channel: str, facts: dict[str, Any]) -> Rendered:
    """One message kind on one channel (`email/<kind>.j2`, `sms/<kind>.j2`)."""
    name = f"{channel}/{template}.j2"
    text = environment(html=False).get_template(name)
    if channel == "sms":
        return Rendered(None, text.render(**facts).strip(), None)
    parts = {part: text.render(**facts, part=part).strip() for part in ("subject", "text")}
    html = environment().get_template(name).render(**facts, part="html").strip()
    return Rendered(parts["subject"], parts["text"], html)


def render_page(name: str, **context: Any) -> str:
    return environment(strict=False).get_template(f"pages/{name}.html.j2").render(**context)


def render_text(name: str, **facts: Any) -> str:
    """A plain-text template (`ticket/<kind>.j2`, a Zendesk comment's `body`), strict like the
    messages and not HTML-escaped (`body` is not HTML). Zendesk renders Markdown in `body`, so
    the customer's own first name in a public reply (ticket/wismo_recovered.j2) could show as
    a Markdown link, to that customer only; internal notes carry no customer field."""
    return environment(html=False).get_template(name).render(**facts).strip()
