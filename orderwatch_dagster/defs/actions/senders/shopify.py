"""Order tags and an orderwatch note in Shopify, through the Admin GraphQL API.

Tags: `tagsAdd` / `tagsRemove`. The REST order's `tags` is one comma-separated string that a
`PUT /orders/{id}.json` replaces whole, so adding `orderwatch:delayed` would mean read,
modify, write, and a tag a colleague or another app sets in between would be lost. `tagsAdd`
and `tagsRemove` change only the tags named, in one request.

Note: the metafield `orderwatch.note` (`multi_line_text_field`), set with `metafieldsSet` and
removed with `metafieldsDelete` — not the order's `note`, and not its `note_attributes`
(`customAttributes`). `orderUpdate` replaces either of those whole and has no compare-and-set,
so a merchant's edit between our read and our write would be lost, and `note_attributes`
also carries the checkout's `promised_delivery_date` that ingest reads (docs/architecture.md).
A metafield is ours alone: writing it touches nothing the merchant or another app wrote.
Shopify shows it on the order page once a metafield definition for Orders with that
namespace and key exists (Settings → Custom data); without one it is still stored and
readable through the API.

Every mutation used has set semantics: adding a tag that is there, removing one that is not,
setting the same note or deleting one that is gone changes nothing. A retry after a timeout or
a 5xx therefore cannot double anything, so this sender retries fate-unknown tries (urllib3
`Retry`); no idempotency key is needed. A 200 counts as `ACCEPTED` only when every mutation
sent came back with its result (`node.id`, the metafield's `id`, the deleted list) and no
`userErrors`; top-level `errors` are `THROTTLED` (not executed: `NOT_ACCEPTED` with the wait
from `extensions.cost`), `ACCESS_DENIED` (a missing scope: `NOT_ACCEPTED`, `fix_config`),
refusals when no data came back (`REJECTED`), and unknown when some did (`UNCERTAIN`).
HTTP 402 (shop frozen) and 423 (shop locked) are `NOT_ACCEPTED` with `fix_config`.

`channel="order_tags"`: `recipient` is the Shopify order id (or its `gid://shopify/Order/..`;
a `gid://shopify/Customer/..` tags the customer record the same way); `metadata`:
`add_tags` / `remove_tags` (lists), `note` (text for the orderwatch note) or
`clear_note: true` (remove it, e.g. when the order recovers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    require,
    string_list,
)
from orderwatch_dagster.defs.actions.senders.transport import Exchange, Request
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome

NOTE_NAMESPACE = "orderwatch"
NOTE_KEY = "note"
NOTE_TYPE = "multi_line_text_field"

# One entry per part of a request: (variable, its GraphQL type, the mutation field, the
# payload selection, the payload field that proves the mutation ran).
_PARTS: dict[str, tuple[str, str, str, str]] = {
    "add": ("[String!]!", "tagsAdd(id: $id, tags: $add)", "node { id }", "node"),
    "remove": ("[String!]!", "tagsRemove(id: $id, tags: $remove)", "node { id }", "node"),
    "note": (
        "[MetafieldsSetInput!]!",
        "metafieldsSet(metafields: $note)",
        "metafields { id namespace key }",
        "metafields",
    ),
    "clear": (
        "[MetafieldIdentifierInput!]!",
        "metafieldsDelete(metafields: $clear)",
        "deletedMetafields { ownerId namespace key }",
        "deletedMetafields",
    ),
}
_MUTATION = {part: field.split("(")[0] for part, (_, field, _, _) in _PARTS.items()}
TAGGABLE = ("gid://shopify/Order/", "gid://shopify/Customer/")  # tagsAdd takes both
CONFIG_STATUSES = frozenset({402, 423})  # shop frozen (unpaid) / locked: nothing executed


def order_gid(order_id: str) -> str:
    """A numeric id is an order; a GID may also name the customer record."""
    if order_id.startswith(TAGGABLE):
        return order_id
    if not order_id.isdigit():
        raise Refused(f"not a Shopify order id: {order_id!r}")
    return f"gid://shopify/Order/{order_id}"


def tags_mutation(parts: list[str]) -> str:
    """One mutation with only the fields needed (GraphQL refuses unused variables)."""
    declared = ["$id: ID!"] if {"add", "remove"} & set(parts) else []
    declared += [f"${part}: {_PARTS[part][0]}" for part in parts]
    fields = [
        f"{_PARTS[part][1]} {{ {_PARTS[part][2]} userErrors {{ field message }} }}"
        for part in parts
    ]
    return f"mutation OrderwatchOrderUpdate({', '.join(declared)}) {{ {' '.join(fields)} }}"


@dataclass(frozen=True)
class _Mutation:
    request: Request
    parts: tuple[str, ...]  # keys of _PARTS, in the order the mutation runs them


def _variables(gid: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The request's variables by part, from `Outbound.metadata` (refused when unusable)."""
    add = string_list(meta.get("add_tags"), "add_tags")
    remove = string_list(meta.get("remove_tags"), "remove_tags")
    if set(add) & set(remove):
        raise Refused(f"tags both added and removed: {sorted(set(add) & set(remove))}")
    note, clear = meta.get("note"), meta.get("clear_note", False)
    if note is not None and not isinstance(note, str):
        raise Refused("note must be a string")
    if not isinstance(clear, bool):
        raise Refused("clear_note must be true or false")
    if note is not None and clear:
        raise Refused("note and clear_note together")
    identifier = {"ownerId": gid, "namespace": NOTE_NAMESPACE, "key": NOTE_KEY}
    parts: dict[str, Any] = {
        "add": add,
        "remove": remove,
        "note": [{**identifier, "type": NOTE_TYPE, "value": require(note, "note")}]
        if note is not None
        else None,
        "clear": [identifier] if clear else None,
    }
    return {name: value for name, value in parts.items() if value}


def _throttle_wait(body: dict[str, Any]) -> float | None:
    """Seconds until the bucket holds the query's cost again (extensions.cost)."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return max(missing, 0.0) / float(status["restoreRate"])
    except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


class ShopifyOrderTagSender(HttpSenderResource):
    """Shopify order tags and note via GraphQL `POST {base_url}/graphql.json`, token in
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

    def _prepare(self, message: Outbound) -> _Mutation:
        gid = order_gid(str(require(message.recipient, "order id")))
        variables = _variables(gid, dict(message.metadata))
        if not variables:
            raise Refused("nothing to do: no add_tags, remove_tags, note or clear_note")
        parts = list(variables)
        if {"add", "remove"} & set(parts):
            variables["id"] = gid
        request = Request.json_body(
            "POST",
            self._url("graphql.json"),
            self._label("POST", "graphql.json"),
            {"query": tags_mutation(parts), "variables": variables},
            idempotent=True,  # set semantics (module docstring)
        )
        return _Mutation(request, tuple(parts))

    def _deliver(self, message: Outbound, prepared: _Mutation) -> DeliveryResult:
        request = dataclasses.replace(
            prepared.request,
            headers={**prepared.request.headers, "X-Shopify-Access-Token": str(self.access_token)},
        )
        exchange = self._exchange(request)
        if exchange.status in CONFIG_STATUSES:
            return exchange.result(
                outcome=Outcome.NOT_ACCEPTED,
                detail=f"HTTP {exchange.status}: the shop is frozen or locked, nothing changed",
                follow_up=FollowUp.FIX_CONFIG,
            )
        if exchange.outcome() is not Outcome.ACCEPTED:
            return exchange.result()
        body = exchange.json()
        if not isinstance(body, dict):
            return exchange.result(
                outcome=Outcome.UNCERTAIN,
                detail=f"HTTP {exchange.status} without a GraphQL answer: {exchange.text(80)!r}",
            )
        return _graphql_result(exchange, body, prepared.parts, message)


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level GraphQL errors as dicts, whatever shape they came in (list, string)."""
    raw = body.get("errors")
    if not raw:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [e if isinstance(e, dict) else {"message": str(e)} for e in items]


def _codes(errors: list[dict[str, Any]]) -> set[str]:
    return {str((e.get("extensions") or {}).get("code")) for e in errors if e.get("extensions")}


def _graphql_result(
    exchange: Exchange, body: dict[str, Any], parts: tuple[str, ...], message: Outbound
) -> DeliveryResult:
    """A 200 from GraphQL can still carry a throttle, top-level errors, user errors, or no
    result at all."""
    errors, data = _errors(body), body.get("data")
    data = data if isinstance(data, dict) else {}
    if errors:
        text = "; ".join(str(e.get("message")) for e in errors)[:250]
        codes = _codes(errors)
        if "THROTTLED" in codes:  # a throttled query is not executed: provably not taken
            result = exchange.result(
                outcome=Outcome.NOT_ACCEPTED, detail="Shopify GraphQL THROTTLED: nothing changed"
            )
            return dataclasses.replace(result, retry_after_s=_throttle_wait(body))
        if "ACCESS_DENIED" in codes:
            return exchange.result(
                outcome=Outcome.NOT_ACCEPTED,
                detail=f"GraphQL ACCESS_DENIED (the token lacks a scope): {text}",
                follow_up=FollowUp.FIX_CONFIG,
            )
        if not any(data.values()):  # nothing executed: the query itself was refused
            return exchange.result(outcome=Outcome.REJECTED, detail=f"GraphQL errors: {text}")
        return exchange.result(
            outcome=Outcome.UNCERTAIN, detail=f"GraphQL errors after a partial answer: {text}"
        )
    user_errors, missing = [], []
    for part in parts:
        name, proof = _MUTATION[part], _PARTS[part][3]
        payload = data.get(name) if isinstance(data.get(name), dict) else {}
        found = payload.get("userErrors") or []
        user_errors += [f"{name}: {e.get('message') if isinstance(e, dict) else e}" for e in found]
        if not found and not _proves(proof, payload.get(proof)):
            missing.append(name)
    if user_errors:
        return exchange.result(outcome=Outcome.REJECTED, detail="; ".join(user_errors)[:300])
    if missing:
        return exchange.result(
            outcome=Outcome.UNCERTAIN,
            detail=f"HTTP 200 without a result for {', '.join(missing)}: not known to be done",
        )
    return exchange.result(
        detail=_done(parts, message), provider_id=order_gid(str(message.recipient))
    )


def _proves(proof: str, value: Any) -> bool:
    """The payload field shows the mutation ran: the node with its id, the metafields set
    each with an id, or the deleted identifiers (a null entry: it was already gone)."""
    if proof == "node":
        return isinstance(value, dict) and bool(value.get("id"))
    if not isinstance(value, list) or not value:
        return False
    if proof == "metafields":
        return all(isinstance(v, dict) and v.get("id") for v in value)
    return all(v is None or isinstance(v, dict) for v in value)


def _done(parts: tuple[str, ...], message: Outbound) -> str:
    meta = message.metadata
    said = {
        "add": f"tags added {list(meta.get('add_tags') or [])}",
        "remove": f"tags removed {list(meta.get('remove_tags') or [])}",
        "note": f"note {NOTE_NAMESPACE}.{NOTE_KEY} set",
        "clear": f"note {NOTE_NAMESPACE}.{NOTE_KEY} removed",
    }
    return ", ".join(said[p] for p in parts)
