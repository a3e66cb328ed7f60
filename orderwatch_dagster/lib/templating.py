"""Customer messages and pages from Jinja2 templates in lib/templates/, always in a
`SandboxedEnvironment` with autoescaping: a customer's name or address is data, never markup or
template code (`{{7*7}}` and `<script>` in a name come out as text)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def environment(strict: bool = True) -> SandboxedEnvironment:
    """Messages are strict (a fact missing from the order state is an error, never ""); pages
    show what a packet has (an order the warehouse no longer holds still gets its page)."""
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
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
    compiled = environment().get_template(f"{channel}/{template}.j2")
    if channel == "sms":
        return Rendered(None, compiled.render(**facts).strip(), None)
    parts = {part: compiled.render(**facts, part=part).strip() for part in ("subject", "text")}
    html = compiled.render(**facts, part="html").strip()
    return Rendered(parts["subject"], parts["text"], html)


def render_page(name: str, **context: Any) -> str:
    return environment(strict=False).get_template(f"pages/{name}.html.j2").render(**context)


def render_text(name: str, **facts: Any) -> str:
    """A plain template (`ticket/<kind>.j2`), strict and autoescaped like the messages."""
    return environment().get_template(name).render(**facts).strip()
