"""Reroute requests to the 3PL through what ShipBob's API allows for a shipment in its state.

ShipBob's Orders API (2026-01) has three shipment-level changes that can save a late order;
each answers `{"id", "is_success", "error": {"code", "message"}}` per shipment:
- `PUT /shipment/{id}:updateAddress` (`street_address1` and `city` required;
  `recipient_name`, `street_address2`, `state`, `zip_code`, `country_code`, `company_name`,
  `email`, `phone_number` optional): a corrected address (an invalid-address hold);
- `PUT /shipment:bulkUpdateShippingService` (`shipment_ids`, `requested_shipping_service_id`,
  `reason`, all required): a faster service for a shipment that will miss its promise;
- `POST /shipment/{id}:updateLineItems` with the shipment's complete line items, each with a
  `fulfillment_center_id`: fulfil from another fulfillment center (one with the stock). The
  API takes only the complete list, "as returned by GET :getLineItems", so the sender reads
  it first and sends every item back with the new center. ShipBob offers no version check
  between the two calls, so a line-item edit made in between would be overwritten. An item
  with serial numbers (which the update cannot carry) makes it a task instead.

ShipBob documents that a shipment must not be picked, packed or shipped to be cancelled; this
sender assumes the same for these edits (the warehouse has the parcel in hand) and does not
ask. When the last known state rules an edit out — `Completed` (in the carrier's hands),
`Cancelled`, `LabeledCreated` or any status it does not know, or a status detail Picked /
Packed / Labeled — or the action is none of the three, the sender asks nothing and tells the
job to open a task (`REJECTED`, `follow_up=open_task`), as it does whenever ShipBob refuses
(`is_success: false` or a 4xx).

No idempotency key exists here; a timeout or 5xx on an edit is `UNCERTAIN` and not retried:
a second try could report failure for a change the first one made (the shipment moves on).
The line-item read is a GET and is retried; if it fails, nothing was changed (`NOT_ACCEPTED`).

`channel="reroute"`: `recipient` is the ShipBob shipment id; `metadata`: `action`
(`update_address` | `change_shipping_service` | `change_fulfillment_center` | anything else
→ task), `shipment_status` and `status_details` (names or ids, as the last ShipBob shipment
showed them), `address`, `shipping_service_id`, `fulfillment_center_id`, `reason`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    as_int,
    require,
)
from orderwatch_dagster.defs.actions.senders.transport import Exchange, Request
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome

# ShipBob's status details of a Processing shipment: Picked 100, Packed 101, Labeled 102.
IN_HAND_DETAILS = {"picked": 100, "packed": 101, "labeled": 102}
EDITABLE_STATUSES = frozenset({"none", "processing", "exception", "onhold", "on hold"})
ADDRESS_FIELDS = (
    "recipient_name",
    "street_address1",
    "street_address2",
    "city",
    "state",
    "zip_code",
    "country_code",
    "company_name",
    "email",
    "phone_number",
)
ACTIONS = ("update_address", "change_shipping_service", "change_fulfillment_center")


def reroute_blocker(status: str | None, details: Iterable[str | int] = ()) -> str | None:
    """Why ShipBob's API cannot change a shipment in this state (None: it can)."""
    state = (status or "").strip().lower()
    if state == "completed":
        return "the shipment has left ShipBob (Completed): it is in the carrier's hands"
    if state == "cancelled":
        return "the shipment is cancelled"
    if state not in EDITABLE_STATUSES:
        return f"ShipBob shipment status {status!r} allows no change through the API"
    names = {str(d).strip().lower() for d in details}
    in_hand = [n for n, i in IN_HAND_DETAILS.items() if n in names or str(i) in names]
    if in_hand:
        return f"the shipment is already {'/'.join(in_hand)} at the warehouse"
    return None


def _task(detail: str, **kw: Any) -> DeliveryResult:
    kw.setdefault("attempts", 0)
    return DeliveryResult(
        Outcome.REJECTED, detail=f"{detail}: open a task", follow_up=FollowUp.OPEN_TASK, **kw
    )


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Refused("update_address needs metadata['address'] (a dict)")
    address = {k: str(value[k]) for k in ADDRESS_FIELDS if value.get(k) not in (None, "")}
    for needed in ("street_address1", "city"):  # the only two the API requires
        require(address.get(needed), f"address.{needed}")
    return address


def moved_line_items(items: Any, center: int) -> list[dict[str, Any]] | str:
    """The update body's items from `:getLineItems`, all sent to `center`; or why not."""
    if not isinstance(items, list) or not items:
        return "ShipBob returned no line items for the shipment"
    moved = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("inventory_id"), int):
            return "ShipBob returned a line item without an inventory_id"
        if item.get("serial_numbers"):
            return "a line item has serial numbers, which the line-item update cannot carry"
        entry: dict[str, Any] = {
            "inventory_id": item["inventory_id"],
            "quantity": item.get("quantity"),
            "fulfillment_center_id": center,
        }
        if not isinstance(entry["quantity"], int):
            return "ShipBob returned a line item without a quantity"
        lot = item.get("lot") if isinstance(item.get("lot"), dict) else {}
        if item.get("is_lot") and lot:  # keep the lot the items were allocated from
            entry["lot_number"] = lot.get("lot_number")
            entry["lot_date"] = lot.get("lot_date")
            entry["is_manually_assigned_lot"] = lot.get("selection_method") == "Specific"
        moved.append(entry)
    return moved


@dataclass(frozen=True)
class _Move:
    """A move to another fulfillment center: read the line items, then write them back."""

    read: Request
    write_path: str
    center: int


class ShipBobRerouteSender(HttpSenderResource):
    """ShipBob shipment changes; Personal Access Token as `Authorization: Bearer` (the WMS
    connector's `SHIPBOB_ACCESS_TOKEN`)."""

    base_url: str = Field(
        default="https://api.shipbob.com/2026-01", description="API base with its version"
    )
    access_token: str | None = Field(default=None, description="dg.EnvVar('SHIPBOB_ACCESS_TOKEN')")

    channels: ClassVar[tuple[str, ...]] = ("reroute",)
    enable_var: ClassVar[str] = "ORDERWATCH_SHIPBOB_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("base_url", "access_token")
    env: ClassVar[tuple[EnvSetting, ...]] = (
        EnvSetting(
            "ORDERWATCH_SHIPBOB_URL",
            "base_url",
            "https://api.shipbob.com/2026-01",
            "API base URL with version",
        ),
        EnvSetting(
            "SHIPBOB_ACCESS_TOKEN", "access_token", "(required)", "Personal Access Token", True
        ),
    )

    def _prepare(self, message: Outbound) -> Request | _Move | DeliveryResult:
        meta = message.metadata
        shipment_id = str(require(message.recipient, "ShipBob shipment id"))
        if not shipment_id.isdigit():
            raise Refused(f"not a ShipBob shipment id: {shipment_id!r}")
        action = meta.get("action")
        if action not in ACTIONS:
            return _task(f"ShipBob's API offers no {action!r} for a shipment")
        blocker = reroute_blocker(meta.get("shipment_status"), meta.get("status_details") or ())
        if blocker:
            return _task(f"{blocker}; ShipBob's API cannot {action.replace('_', ' ')}")
        if action == "update_address":
            path = f"shipment/{shipment_id}:updateAddress"
            return self._json("PUT", path, _address(meta.get("address")))
        if action == "change_shipping_service":
            payload = {
                "shipment_ids": [int(shipment_id)],
                "requested_shipping_service_id": as_int(
                    require(meta.get("shipping_service_id"), "shipping_service_id"),
                    "shipping_service_id",
                ),
                "reason": str(meta.get("reason") or "orderwatch: promise at risk"),
            }
            return self._json("PUT", "shipment:bulkUpdateShippingService", payload)
        center = as_int(
            require(meta.get("fulfillment_center_id"), "fulfillment_center_id"),
            "fulfillment_center_id",
        )
        read = f"shipment/{shipment_id}:getLineItems"
        return _Move(
            Request("GET", self._url(read), self._label("GET", read), idempotent=True),
            f"shipment/{shipment_id}:updateLineItems",
            center,
        )

    def _json(self, method: str, path: str, payload: Any) -> Request:
        return Request.json_body(method, self._url(path), self._label(method, path), payload)

    def _authorized(self, request: Request) -> Request:
        headers = {**request.headers, "Authorization": f"Bearer {self.access_token}"}
        return dataclasses.replace(request, headers=headers)

    def _deliver(self, message: Outbound, prepared: Request | _Move) -> DeliveryResult:
        if isinstance(prepared, _Move):
            return self._move(message, prepared)
        return _edit_result(self._exchange(self._authorized(prepared)), message)

    def _move(self, message: Outbound, move: _Move) -> DeliveryResult:
        read = self._exchange(self._authorized(move.read))
        if read.outcome() is not Outcome.ACCEPTED:
            if read.outcome() is Outcome.REJECTED:  # e.g. 404: no such shipment
                return read.result(
                    detail=f"HTTP {read.status}: {read.text(200)}: open a task",
                    follow_up=FollowUp.OPEN_TASK,
                )
            # A read changes nothing: whatever happened, the move was not made.
            return read.result(
                outcome=Outcome.NOT_ACCEPTED,
                detail=f"reading the line items failed ({read.summary()}): nothing was changed",
            )
        items = moved_line_items(read.json(), move.center)
        if isinstance(items, str):
            return _task(items, attempts=len(read.tries), history=read.history())
        write = self._json("POST", move.write_path, {"items": items})
        result = _edit_result(self._exchange(self._authorized(write)), message)
        return dataclasses.replace(
            result,
            attempts=len(read.tries) + result.attempts,
            history=read.history() + result.history,
        )


def _edit_result(exchange: Exchange, message: Outbound) -> DeliveryResult:
    outcome = exchange.outcome()
    if outcome is Outcome.REJECTED:
        body = exchange.json()
        why = (
            f"{body.get('code')} {body.get('message')}"
            if isinstance(body, dict) and body.get("code")
            else exchange.text(200)
        )
        return exchange.result(
            detail=f"HTTP {exchange.status}: {why}: open a task", follow_up=FollowUp.OPEN_TASK
        )
    if outcome is not Outcome.ACCEPTED:
        return exchange.result()
    body = exchange.json()
    entry = body if isinstance(body, dict) else {}
    if isinstance(entry.get("results"), list) and entry["results"]:
        entry = entry["results"][0]  # the bulk answer: one entry for our one shipment
    if not isinstance(entry, dict) or not isinstance(entry.get("is_success"), bool):
        # A 2xx that says neither yes nor no: the edit may or may not have been made.
        return exchange.result(
            outcome=Outcome.UNCERTAIN,
            detail=f"HTTP {exchange.status} without is_success: {exchange.text(80)!r}",
        )
    if entry["is_success"]:
        return exchange.result(
            detail=f"ShipBob {message.metadata.get('action')} done",
            provider_id=f"shipment {message.recipient}",
        )
    error = entry.get("error") if isinstance(entry.get("error"), dict) else {}
    return exchange.result(
        outcome=Outcome.REJECTED,
        detail=f"ShipBob refused: {error.get('code')} {error.get('message')}: open a task",
        follow_up=FollowUp.OPEN_TASK,
    )
