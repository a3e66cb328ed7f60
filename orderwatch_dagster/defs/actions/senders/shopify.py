"""Order tags in Shopify through the Admin GraphQL API's `tagsAdd` / `tagsRemove`.

Why GraphQL and not REST: the REST order's `tags` is one comma-separated string that a
`PUT /orders/{id}.json` replaces whole, so adding `orderwatch:delayed` means read, modify,
write, and a tag a colleague or another app sets in between is lost. `tagsAdd` and
`tagsRemove` change only the tags named, in one request, and have set semantics: adding a
tag that is there or removing one that is not changes nothing. A retry after a timeout or a
5xx therefore cannot double anything, so this sender retries fate-unknown tries (urllib3
`Retry`); no idempotency key is needed. (Shopify also marks the REST Admin API legacy.)

`channel="order_tags"`: `recipient` is the Shopify order id (or its `gid://shopify/Order/..`;
a `gid://shopify/Customer/..` tags the customer record the same way),
`metadata["add_tags"]` / `metadata["remove_tags"]` the tags, e.g. `orderwatch:delayed` added
while an order is late and removed when it recovers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    require,
    string_list,
)
from orderwatch_dagster.defs.actions.senders.transport import Exchange, Request
from orderwatch_dagster.lib.outbound import DeliveryResult, Outbound, Outcome

_FIELDS = {
    "add": "tagsAdd(id: $id, tags: $add) { node { id } userErrors { field message } }",
    "remove": "tagsRemove(id: $id, tags: $remove) { node { id } userErrors { field message } }",
}
_MUTATION_NAME = {"add": "tagsAdd", "remove": "tagsRemove"}


TAGGABLE = ("gid://shopify/Order/", "gid://shopify/Customer/")  # tagsAdd takes both


def order_gid(order_id: str) -> str:
    """A numeric id is an order; a GID may also name the customer record."""
    if order_id.startswith(TAGGABLE):
        return order_id
    if not order_id.isdigit():
        raise Refused(f"not a Shopify order id: {order_id!r}")
    return f"gid://shopify/Order/{order_id}"


def tags_mutation(add: list[str], remove: list[str]) -> str:
    """One mutation with only the fields needed (GraphQL refuses unused variables)."""
    parts = [name for name, tags in (("add", add), ("remove", remove)) if tags]
    variables = ", ".join(["$id: ID!", *(f"${p}: [String!]!" for p in parts)])
    fields = " ".join(_FIELDS[p] for p in parts)
    return f"mutation OrderwatchTags({variables}) {{ {fields} }}"


def _throttle_wait(body: dict[str, Any]) -> float | None:
    """Seconds until the bucket holds the query's cost again (extensions.cost)."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return max(missing, 0.0) / float(status["restoreRate"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


class ShopifyOrderTagSender(HttpSenderResource):
    """Shopify order tags via GraphQL `POST {base_url}/graphql.json`, token in
    `X-Shopify-Access-Token` (the storefront connector's `SHOPIFY_ACCESS_TOKEN`)."""

    base_url: str = Field(
        default="", description="https://<shop>.myshopify.com/admin/api/<version>"
    )
    access_token: str | None = Field(default=None, description="dg.EnvVar('SHOPIFY_ACCESS_TOKEN')")

    channels: ClassVar[tuple[str, ...]] = ("order_tags",)
    enable_var: ClassVar[str] = "ORDERWATCH_SHOPIFY_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("base_url", "access_token")
    env: ClassVar[tuple[EnvSetting, ...]] = (
        EnvSetting(
            "ORDERWATCH_SHOPIFY_URL",
            "base_url",
            "(required)",
            "`https://<shop>.myshopify.com/admin/api/<version>`",
        ),
        EnvSetting(
            "SHOPIFY_ACCESS_TOKEN", "access_token", "(required)", "Admin API access token", True
        ),
    )

    def _prepare(self, message: Outbound) -> Request:
        gid = order_gid(str(require(message.recipient, "order id")))
        add = string_list(message.metadata.get("add_tags"), "add_tags")
        remove = string_list(message.metadata.get("remove_tags"), "remove_tags")
        if not add and not remove:
            raise Refused("nothing to do: no add_tags or remove_tags")
        if set(add) & set(remove):
            raise Refused(f"tags both added and removed: {sorted(set(add) & set(remove))}")
        variables: dict[str, Any] = {"id": gid}
        if add:
            variables["add"] = add
        if remove:
            variables["remove"] = remove
        host = urlsplit(self.base_url).netloc
        return Request.json_body(
            "POST",
            self._url("graphql.json"),
            f"POST {host}{urlsplit(self.base_url).path.rstrip('/')}/graphql.json",
            {"query": tags_mutation(add, remove), "variables": variables},
            idempotent=True,  # set semantics (module docstring)
        )

    def _deliver(self, message: Outbound, prepared: Request) -> DeliveryResult:
        request = dataclasses.replace(
            prepared,
            headers={**prepared.headers, "X-Shopify-Access-Token": self.access_token or ""},
        )
        exchange = self._exchange(request)
        body = exchange.json()
        if exchange.outcome() is not Outcome.ACCEPTED or not isinstance(body, dict):
            return exchange.result()
        return _graphql_result(exchange, body, message)


def _graphql_result(exchange: Exchange, body: dict[str, Any], message: Outbound) -> DeliveryResult:
    """A 200 from GraphQL can still carry a throttle, top-level errors or user errors."""
    errors = body.get("errors") or []
    if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
        # A throttled query is not executed: provably not taken.
        result = exchange.result(
            outcome=Outcome.NOT_ACCEPTED, detail="Shopify GraphQL THROTTLED: nothing was changed"
        )
        return dataclasses.replace(result, retry_after_s=_throttle_wait(body))
    if errors:
        text = "; ".join(str(e.get("message")) for e in errors)
        return exchange.result(outcome=Outcome.REJECTED, detail=f"GraphQL errors: {text}"[:300])
    data = body.get("data") or {}
    user_errors = [
        f"{name}: {err.get('message')}"
        for name in _MUTATION_NAME.values()
        for err in ((data.get(name) or {}).get("userErrors") or [])
    ]
    if user_errors:
        return exchange.result(outcome=Outcome.REJECTED, detail="; ".join(user_errors)[:300])
    add = message.metadata.get("add_tags") or []
    remove = message.metadata.get("remove_tags") or []
    return exchange.result(
        detail=f"tags added {list(add)}, removed {list(remove)}",
        provider_id=order_gid(str(message.recipient)),
    )
