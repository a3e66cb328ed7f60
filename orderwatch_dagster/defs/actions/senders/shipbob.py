"""Reroute requests to the 3PL through what ShipBob's API allows for a shipment in its state.

ShipBob's Orders API (dated versions such as 2026-01) has two shipment-level changes that
can save a late order, both `PUT`, both answering `{"is_success", "error"}` per shipment:
- `PUT /shipment/{id}:updateAddress` (`recipient_name`, `street_address1` and `city`
  required, `street_address2`, `state`, `zip_code`, `country_code`, `company_name`, `email`,
  `phone_number`): a corrected address (an invalid-address hold);
- `PUT /shipment:bulkUpdateShippingService` (`shipment_ids`, `requested_shipping_service_id`,
  `reason`): a faster service for a shipment that will miss its promise.
ShipBob documents that a shipment must not be picked, packed or shipped to be cancelled; this
sender assumes the same for these edits (the warehouse has the parcel in hand) and does not
ask. A shipment that has left ShipBob (`Completed`) is the carrier's, and the API offers no
move to another fulfillment center at all. For those the sender refuses without calling
ShipBob and tells the job to open a task (`follow_up=open_task`), as it does whenever
ShipBob refuses (`is_success: false` or a 4xx).

No idempotency key exists here; a timeout or 5xx is `UNCERTAIN` and not retried: a second
try could report failure for a change the first one made (the shipment moves on).

`channel="reroute"`: `recipient` is the ShipBob shipment id; `metadata`: `action`
(`update_address` | `change_shipping_service` | anything else → task), `shipment_status` and
`status_details` (names or ids, as the last ShipBob shipment showed them), `address`,
`shipping_service_id`, `reason`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    require,
)
from orderwatch_dagster.defs.actions.senders.transport import Request
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
ACTIONS = ("update_address", "change_shipping_service")


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


def _task(detail: str) -> DeliveryResult:
    return DeliveryResult(
        Outcome.REJECTED, detail=f"{detail}: open a task", attempts=0, follow_up=FollowUp.OPEN_TASK
    )


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Refused("update_address needs metadata['address'] (a dict)")
    address = {k: str(value[k]) for k in ADDRESS_FIELDS if value.get(k) not in (None, "")}
    for needed in ("street_address1", "city"):
        require(address.get(needed), f"address.{needed}")
    return address


class ShipBobRerouteSender(HttpSenderResource):
    """ShipBob shipment changes; Personal Access Token as `Authorization: Bearer` (the WMS
    connector's `SHIPBOB_ACCESS_TOKEN`), optional `shipbob_channel_id` header."""

    base_url: str = Field(
        default="https://api.shipbob.com/2026-01", description="API base with its version"
    )
    access_token: str | None = Field(default=None, description="dg.EnvVar('SHIPBOB_ACCESS_TOKEN')")
    channel_id: str | None = None

    channels: ClassVar[tuple[str, ...]] = ("reroute",)
    enable_var: ClassVar[str] = "ORDERWATCH_SHIPBOB_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("access_token",)
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
        EnvSetting(
            "ORDERWATCH_SHIPBOB_CHANNEL_ID", "channel_id", "(none)", "`shipbob_channel_id` header"
        ),
    )

    def _prepare(self, message: Outbound) -> Request | DeliveryResult:
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
            path, payload = f"shipment/{shipment_id}:updateAddress", _address(meta.get("address"))
        else:
            path = "shipment:bulkUpdateShippingService"
            payload = {
                "shipment_ids": [int(shipment_id)],
                "requested_shipping_service_id": int(
                    require(meta.get("shipping_service_id"), "shipping_service_id")
                ),
                "reason": str(meta.get("reason") or "orderwatch: promise at risk"),
            }
        host_path = urlsplit(self.base_url).netloc + urlsplit(self.base_url).path.rstrip("/")
        return Request.json_body("PUT", self._url(path), f"PUT {host_path}/{path}", payload)

    def _deliver(self, message: Outbound, prepared: Request) -> DeliveryResult:
        headers = {**prepared.headers, "Authorization": f"Bearer {self.access_token or ''}"}
        if self.channel_id:
            headers["shipbob_channel_id"] = self.channel_id
        exchange = self._exchange(dataclasses.replace(prepared, headers=headers))
        outcome = exchange.outcome()
        if outcome is Outcome.REJECTED:
            return exchange.result(
                detail=f"HTTP {exchange.status}: {exchange.text(200)}: open a task",
                follow_up=FollowUp.OPEN_TASK,
            )
        if outcome is not Outcome.ACCEPTED:
            return exchange.result()
        body = exchange.json()
        result = body if isinstance(body, dict) else {}
        if isinstance(result.get("results"), list) and result["results"]:
            result = result["results"][0]  # the bulk answer: one entry for our one shipment
        if result.get("is_success") is True:
            return exchange.result(
                detail=f"ShipBob {message.metadata.get('action')} done",
                provider_id=f"shipment {message.recipient}",
            )
        error = result.get("error") or {}
        return exchange.result(
            outcome=Outcome.REJECTED,
            detail=f"ShipBob refused: {error.get('code')} {error.get('message')}: open a task",
            follow_up=FollowUp.OPEN_TASK,
        )
