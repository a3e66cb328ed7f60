"""The HTTP senders against a real local server: vendor request shapes, and at most once.

Every failure class of the delivery contract (lib/outbound.py) is played by the server and
counted on its side: not accepted → nothing taken, sent once on the next call; fate unknown
→ retried only under an idempotency key the provider honours (Zendesk creates) or set
semantics (Shopify tags), otherwise uncertain after exactly one request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import build_schema, graphql_sync
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012
from smtp_server import free_port

from orderwatch_dagster.defs.actions.senders import (
    ShipBobRerouteSender,
    ShopifyOrderTagSender,
    SlackWebhookSender,
    TwilioSmsSender,
    ZendeskTicketSender,
)
from orderwatch_dagster.defs.actions.senders.transport import Request, RetryPolicy, send
from orderwatch_dagster.defs.actions.senders.zendesk import MAX_IDEMPOTENCY_KEY
from orderwatch_dagster.lib.outbound import FollowUp, Outbound, Outcome

VENDOR = Path(__file__).parent / "fixtures" / "vendor"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
FAST = {"backoff_factor": 0.0, "read_timeout_s": 0.25, "connect_timeout_s": 1.0}


@pytest.fixture(name="http_server")
def _http_server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as server:
        yield server


def _vendor(path: str) -> Any:
    return json.loads((VENDOR / path).read_text())


def _basic(request: RecordedRequest) -> str:
    scheme, _, value = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(value).decode()


def twilio(server: ScriptedHTTPServer, **kw: Any) -> TwilioSmsSender:
    config = {
        "enabled": True,
        "base_url": server.url,
        "account_sid": ACCOUNT_SID,
        "auth_token": "tw-token",
        "from_number": "+15005550006",
        **FAST,
        **kw,
    }
    return TwilioSmsSender(**config)


def zendesk(server: ScriptedHTTPServer, **kw: Any) -> ZendeskTicketSender:
    config = {
        "enabled": True,
        "base_url": f"{server.url}/api/v2",
        "email": "ops@example.com",
        "api_token": "zd-token",
        **FAST,
        **kw,
    }
    return ZendeskTicketSender(**config)


SMS = Outbound("order-1001:ship_late:1:delay_sms", "sms", "+14155550123", "Your order is late.")


# --- Twilio: the request is Twilio's own -------------------------------------------------


def _twilio_request_validator() -> tuple[Draft7Validator, list[list[str]]]:
    """The spec's own request-body schema (its $refs resolved in the spec), closed to fields
    the spec does not define, and its `x-twilio.conditional` groups (one of each required)."""
    spec = _vendor("twilio/openapi_messages_create.json")
    registry = Registry().with_resource("urn:twilio", Resource(spec, specification=DRAFT7))
    pointer = "/post/requestBody/content/application~1x-www-form-urlencoded/schema"
    schema = dict(spec["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"])
    closed = {"allOf": [{"$ref": f"urn:twilio#{pointer}"}]}
    closed["propertyNames"] = {"enum": sorted(schema["schema"]["properties"])}
    validator = Draft7Validator(closed, registry=registry, format_checker=FormatChecker())
    return validator, spec["post"]["x-twilio"]["conditional"]


def _check_twilio(form: dict[str, list[str]]) -> None:
    validator, conditional = _twilio_request_validator()
    fields = {name: values[-1] for name, values in form.items()}
    errors = [e.message for e in validator.iter_errors(fields)]
    assert not errors, errors
    canonical = {name.lower(): name for name in fields}
    for group in conditional:  # snake_case names in x-twilio: From / MessagingServiceSid
        present = [g for g in group if g.replace("_", "") in canonical]
        assert present, f"the request needs one of {group}"


def test_twilio_validator_catches_a_bad_request() -> None:
    """The OpenAPI check is real: a request without `To`, or with an unknown field, fails."""
    validator, _ = _twilio_request_validator()
    assert list(validator.iter_errors({"Body": "x", "From": "+15005550006"}))
    assert list(validator.iter_errors({"To": "+1415", "Body": "x", "Colour": "red"}))


@pytest.mark.parametrize(
    ("config", "sender_field"),
    [({}, "From"), ({"messaging_service_sid": "MG" + "ab" * 16}, "MessagingServiceSid")],
)
def test_twilio_sms_matches_the_openapi_description(
    http_server: ScriptedHTTPServer, config: dict[str, Any], sender_field: str
) -> None:
    http_server.route(MESSAGES, Reply(201, _vendor("twilio/message_1.json")))
    result = twilio(http_server, status_callback="https://ops.example.com/twilio", **config).send(
        SMS
    )
    assert result.outcome is Outcome.ACCEPTED, result
    assert result.provider_id == "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    (request,) = http_server.requests_to(MESSAGES)
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert _basic(request) == f"{ACCOUNT_SID}:tw-token"
    form = request.form()
    assert form["To"] == ["+14155550123"] and form["Body"] == ["Your order is late."]
    assert sender_field in form and not ({"From", "MessagingServiceSid"} - {sender_field}) & set(
        form
    )
    _check_twilio(form)


@pytest.mark.parametrize(
    ("code", "follow_up"),
    [
        (21610, FollowUp.OPT_OUT),
        (21211, FollowUp.INVALID_RECIPIENT),
        (21614, FollowUp.INVALID_RECIPIENT),
        (21612, None),  # the To/From combination: may be our From number, never stops texts
        (21602, None),
    ],
)
def test_twilio_refusals_are_rejected_and_classified(
    http_server: ScriptedHTTPServer, code: int, follow_up: FollowUp | None
) -> None:
    error = {"code": code, "message": "refused", "more_info": "", "status": 400}
    http_server.route(MESSAGES, Reply(400, error))
    result = twilio(http_server).send(SMS)
    assert result.outcome is Outcome.REJECTED
    assert result.follow_up is follow_up
    assert str(code) in result.detail
    assert len(http_server.requests_to(MESSAGES)) == 1


def test_twilio_429_is_not_accepted_and_goes_once_on_the_next_call(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route(
        MESSAGES,
        Reply(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "7"}),
        Reply(201, _vendor("twilio/message_1.json")),
    )
    sender = twilio(http_server)
    first = sender.send(SMS)
    assert first.outcome is Outcome.NOT_ACCEPTED and first.retry_after_s == 7.0
    assert len(http_server.requests_to(MESSAGES)) == 1  # not retried within the send
    second = sender.send(SMS)  # the job's next run
    assert second.outcome is Outcome.ACCEPTED
    statuses = [a.status for result in (first, second) for a in result.history]
    assert statuses == [429, 201]  # two requests, one message: the 429 was not taken
    assert len(http_server.requests_to(MESSAGES)) == 2


def test_twilio_503_with_retry_after_is_not_accepted_without_it_uncertain(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route(MESSAGES, Reply(503, headers={"Retry-After": "3"}), Reply(503))
    sender = twilio(http_server)
    assert sender.send(SMS).outcome is Outcome.NOT_ACCEPTED
    assert sender.send(SMS).outcome is Outcome.UNCERTAIN
    assert len(http_server.requests_to(MESSAGES)) == 2


def test_connection_refused_is_retried_then_not_accepted_then_sent_once() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    sender = TwilioSmsSender(
        enabled=True,
        base_url=closed,
        account_sid=ACCOUNT_SID,
        auth_token="t",
        from_number="+15005550006",
        connect_retries=2,
        **FAST,
    )
    result = sender.send(SMS)
    assert result.outcome is Outcome.NOT_ACCEPTED
    assert result.attempts == 3 == len(result.history)  # connect retries are safe for POST
    assert all("Connection refused" in (a.error or "") for a in result.history)
    with ScriptedHTTPServer() as server:  # the provider is back on the next run
        server.route(MESSAGES, Reply(201, _vendor("twilio/message_1.json")))
        later = sender.model_copy(update={"base_url": server.url}).send(SMS)
        assert later.outcome is Outcome.ACCEPTED
        assert len(server.requests_to(MESSAGES)) == 1


@pytest.mark.parametrize(
    ("status", "outcome", "follow_up"),
    [
        (301, Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),  # moved: ask there, not here
        (307, Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (308, Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (302, Outcome.UNCERTAIN, None),  # after a POST may mean "done, see there"
        (303, Outcome.UNCERTAIN, None),
        (401, Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),  # our credentials
        (403, Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),  # our permissions
        (408, Outcome.NOT_ACCEPTED, None),  # the server gave up before the request completed
        (409, Outcome.UNCERTAIN, None),  # a conflicting request may have done it
        (422, Outcome.REJECTED, None),
    ],
)
def test_each_http_status_class_on_a_post_without_a_key(
    http_server: ScriptedHTTPServer, status: int, outcome: Outcome, follow_up: FollowUp | None
) -> None:
    headers = {"Location": "https://elsewhere.example.com/"} if 300 <= status < 400 else {}
    http_server.route(MESSAGES, Reply(status, {"code": 20003, "message": "x"}, headers))
    result = twilio(http_server, unknown_retries=3).send(SMS)
    assert (result.outcome, result.follow_up) == (outcome, follow_up)
    assert [a.status for a in result.history] == [status]
    assert len(http_server.requests_to(MESSAGES)) == 1  # never followed, never resent


def test_twilio_keeps_the_account_sid_out_of_labels_and_logs(
    http_server: ScriptedHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The SID is bound as a secret: masked in the ledger's label and in urllib3's debug log
    line of the request (which prints its path)."""
    http_server.route(MESSAGES, Reply(201, _vendor("twilio/message_1.json")))
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        result = twilio(http_server).send(SMS)
    assert result.outcome is Outcome.ACCEPTED
    assert result.history[0].request.endswith("/2010-04-01/Accounts/AC…/Messages.json")
    assert '"POST /2010-04-01/Accounts/' in caplog.text  # urllib3 did log the request line
    assert ACCOUNT_SID not in caplog.text and ACCOUNT_SID not in repr(result)


@pytest.mark.parametrize("reply", [Reply(201, {"sid": "SM1"}, delay=1.0), Reply(500)])
def test_twilio_fate_unknown_is_uncertain_and_never_resent(
    http_server: ScriptedHTTPServer, reply: Reply
) -> None:
    http_server.route(MESSAGES, reply, Reply(201, {"sid": "SM2"}))
    result = twilio(http_server, unknown_retries=3).send(SMS)
    assert result.outcome is Outcome.UNCERTAIN
    assert "not resent" in result.detail
    assert result.attempts == 1 == len(result.history)
    assert len(http_server.requests_to(MESSAGES)) == 1  # no key: never a second request


# --- Zendesk --------------------------------------------------------------------------


def test_zendesk_note_and_reply_are_ticket_updates(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/api/v2/tickets/4016.json", Reply(200, _vendor("zendesk/ticket_3.json")))
    sender = zendesk(http_server)
    note = Outbound(
        "k-note",
        "ticket_note",
        "4016",
        "Order #1001: packet",
        body_html="<p>Order #1001</p>",
        metadata={"group_id": 360001, "tags": ["orderwatch"], "remove_tags": ["wismo_new"]},
    )
    reply = Outbound("k-reply", "ticket_reply", "4016", "Your parcel is on its way.",
                     metadata={"status": "pending"})  # fmt: skip
    assert sender.send(note).outcome is Outcome.ACCEPTED
    result = sender.send(reply)
    assert result.outcome is Outcome.ACCEPTED and result.provider_id == "ticket 4016"
    first, second = http_server.requests_to("/api/v2/tickets/4016.json")
    assert first.method == second.method == "PUT"
    assert _basic(first) == "ops@example.com/token:zd-token"
    assert "Idempotency-Key" not in first.headers
    assert first.json() == {
        "ticket": {
            "comment": {
                "body": "Order #1001: packet",
                "public": False,
                "html_body": "<p>Order #1001</p>",
            },
            "group_id": 360001,
            "additional_tags": ["orderwatch"],
            "remove_tags": ["wismo_new"],
        }
    }  # fmt: skip
    assert second.json() == {
        "ticket": {"comment": {"body": "Your parcel is on its way.", "public": True},
                   "status": "pending"}
    }  # fmt: skip


def test_zendesk_create_sends_the_idempotency_key(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/api/v2/tickets.json", Reply(201, _vendor("zendesk/ticket_1.json")))
    task = Outbound(
        "order-1001:lost:1:task",
        "ticket_create",
        "#1001",
        "Parcel lost: packet attached",
        subject="Order #1001: parcel lost",
        metadata={"group_id": 42, "tags": ["orderwatch", "lost"], "type": "task",
                  "priority": "high"},
    )  # fmt: skip
    result = zendesk(http_server, email=None).send(task)
    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_id == "ticket 4014 comment 6164039218842"
    (request,) = http_server.requests_to("/api/v2/tickets.json")
    assert request.method == "POST"
    assert request.headers["Idempotency-Key"] == "order-1001:lost:1:task"
    assert request.headers["Authorization"] == "Bearer zd-token"
    assert request.json() == {
        "ticket": {
            "subject": "Order #1001: parcel lost",
            "comment": {"body": "Parcel lost: packet attached", "public": False},
            "group_id": 42,
            "external_id": "#1001",
            "tags": ["orderwatch", "lost"],
            "type": "task",
            "priority": "high",
        }
    }


TASK = Outbound("k-task", "ticket_create", "#1002", "packet", subject="Order #1002 late")


def test_zendesk_create_with_unknown_fate_is_retried_under_the_same_key(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route(
        "/api/v2/tickets.json",
        Reply(201, _vendor("zendesk/ticket_1.json"), delay=1.0),  # times out, but was made
        Reply(502),
        Reply(201, _vendor("zendesk/ticket_1.json"), {"x-idempotency-lookup": "hit"}),
    )
    result = zendesk(http_server).send(TASK)
    assert result.outcome is Outcome.ACCEPTED
    assert "replayed" in result.detail
    assert [a.status for a in result.history] == [None, 502, 201]
    assert "ReadTimeoutError" in (result.history[0].error or "")
    requests = http_server.requests_to("/api/v2/tickets.json")
    assert len(requests) == 3 == result.attempts
    assert {r.headers["Idempotency-Key"] for r in requests} == {"k-task"}
    assert len({r.body for r in requests}) == 1  # the same payload under the same key


def test_zendesk_create_stays_uncertain_when_every_try_is_unknown(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route("/api/v2/tickets.json", Reply(500))
    result = zendesk(http_server, unknown_retries=2).send(TASK)
    assert result.outcome is Outcome.UNCERTAIN
    assert "retried as an idempotent request" in result.detail
    assert len(http_server.requests_to("/api/v2/tickets.json")) == 3 == result.attempts


def test_a_throttle_after_an_unknown_try_proves_nothing(http_server: ScriptedHTTPServer) -> None:
    """The first try may have created the ticket: a later 429 does not make it 'not taken'."""
    http_server.route(
        "/api/v2/tickets.json", Reply(201, {"ticket": {"id": 1}}, delay=1.0), Reply(429)
    )
    result = zendesk(http_server).send(TASK)
    assert result.outcome is Outcome.UNCERTAIN
    assert [a.status for a in result.history] == [None, 429]


def test_zendesk_update_with_unknown_fate_is_uncertain_after_one_request(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route("/api/v2/tickets/7.json", Reply(200, {"ticket": {"id": 7}}, delay=1.0))
    result = zendesk(http_server).send(Outbound("k", "ticket_note", "7", "note"))
    assert result.outcome is Outcome.UNCERTAIN
    assert len(http_server.requests_to("/api/v2/tickets/7.json")) == 1


def test_zendesk_create_retries_a_409_under_the_same_key(http_server: ScriptedHTTPServer) -> None:
    """409 while the first create under the key is still running: retried, then the stored
    answer comes back (`miss` would be a fresh create: no 'replayed' claim then)."""
    http_server.route(
        "/api/v2/tickets.json",
        Reply(409, {"error": "Conflict"}),
        Reply(201, _vendor("zendesk/ticket_1.json"), {"x-idempotency-lookup": "miss"}),
    )
    result = zendesk(http_server).send(TASK)
    assert result.outcome is Outcome.ACCEPTED
    assert [a.status for a in result.history] == [409, 201]
    assert "replayed" not in result.detail
    requests = http_server.requests_to("/api/v2/tickets.json")
    assert [r.headers["Idempotency-Key"] for r in requests] == ["k-task", "k-task"]


def test_zendesk_hashes_a_key_longer_than_it_takes(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/api/v2/tickets.json", Reply(201, _vendor("zendesk/ticket_1.json")))
    longest = "k" * MAX_IDEMPOTENCY_KEY
    too_long = "order-1002:" + "x" * MAX_IDEMPOTENCY_KEY
    sender = zendesk(http_server)
    for key in (longest, too_long, too_long):
        assert sender.send(Outbound(key, "ticket_create", "#1002", "p", subject="s")).outcome is (
            Outcome.ACCEPTED
        )
    sent = [r.headers["Idempotency-Key"] for r in http_server.requests_to("/api/v2/tickets.json")]
    hashed = "sha256:" + hashlib.sha256(too_long.encode()).hexdigest()
    assert sent == [longest, hashed, hashed]  # stable for the same decision
    assert all(len(key) <= MAX_IDEMPOTENCY_KEY for key in sent)


@pytest.mark.parametrize("status", [401, 403])
def test_zendesk_access_refused_keeps_the_note_pending(
    http_server: ScriptedHTTPServer, status: int
) -> None:
    http_server.route("/api/v2/tickets/7.json", Reply(status, {"error": "Forbidden"}))
    result = zendesk(http_server).send(Outbound("k", "ticket_note", "7", "note"))
    assert result.outcome is Outcome.NOT_ACCEPTED and result.follow_up is FollowUp.FIX_CONFIG
    assert "zd-token" not in repr(result)


def test_zendesk_validation_error_is_rejected(http_server: ScriptedHTTPServer) -> None:
    closed = [{"description": "Status: closed prevents ticket update"}]
    body = {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {"status": closed},
    }
    http_server.route("/api/v2/tickets/9.json", Reply(422, body))
    result = zendesk(http_server).send(Outbound("k", "ticket_note", "9", "note"))
    assert result.outcome is Outcome.REJECTED
    assert "closed prevents ticket update" in result.detail


# --- Shopify --------------------------------------------------------------------------

GRAPHQL = "/admin/api/2025-07/graphql.json"
ORDER_GID = "gid://shopify/Order/450789469"
TAGS_OK = {
    "data": {
        "tagsAdd": {"node": {"id": ORDER_GID}, "userErrors": []},
        "tagsRemove": {"node": {"id": ORDER_GID}, "userErrors": []},
    },
    "extensions": {"cost": {"requestedQueryCost": 20, "actualQueryCost": 20}},
}
NOTE_SET = {
    "metafields": [
        {"id": "gid://shopify/Metafield/1069228997", "namespace": "orderwatch", "key": "note"}
    ],
    "userErrors": [],
}
NOTE_GONE = {"deletedMetafields": [None], "userErrors": []}  # already absent: still done
ADMIN_SCHEMA = build_schema((VENDOR / "shopify" / "admin_graphql_excerpt.graphql").read_text())


def shopify(server: ScriptedHTTPServer, **kw: Any) -> ShopifyOrderTagSender:
    return ShopifyOrderTagSender(
        enabled=True,
        base_url=f"{server.url}/admin/api/2025-07",
        access_token="shpat_test",
        **{**FAST, **kw},
    )


def _run_against_the_admin_schema(body: dict[str, Any]) -> None:
    """Parse, validate and execute the request against Shopify's schema (excerpt), with its
    variables coerced to the declared input types: a wrong name or type fails here."""
    payloads = {
        "tagsAdd": lambda _info, **a: {"node": {"__typename": "Order", "id": a["id"]},
                                       "userErrors": []},
        "tagsRemove": lambda _info, **a: {"node": {"__typename": "Order", "id": a["id"]},
                                          "userErrors": []},
        "metafieldsSet": lambda _info, **a: {"metafields": [
            {"id": "gid://shopify/Metafield/1", **m} for m in a["metafields"]], "userErrors": []},
        "metafieldsDelete": lambda _info, **a: {"deletedMetafields": a["metafields"],
                                                "userErrors": []},
    }  # fmt: skip
    result = graphql_sync(
        ADMIN_SCHEMA, body["query"], root_value=payloads, variable_values=body["variables"]
    )
    assert result.errors is None, result.errors


def test_the_schema_check_catches_a_wrong_request() -> None:
    """The schema excerpt is a real check: a misspelt argument or a wrong variable type fail."""
    bad_argument = {
        "query": "mutation M($id: ID!, $t: [String!]!) { tagsAdd(id: $id, tag: $t) "
        "{ userErrors { message } } }",
        "variables": {"id": "1", "t": ["x"]},
    }
    bad_input = {
        "query": "mutation M($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) "
        "{ userErrors { message } } }",
        "variables": {"m": [{"ownerId": "1", "key": "note"}]},
    }  # no value
    for body in (bad_argument, bad_input):
        with pytest.raises(AssertionError):
            _run_against_the_admin_schema(body)  # fmt: skip


TAGS = Outbound(
    "order-450789469:recovered:tags",
    "order_tags",
    "450789469",
    "",
    metadata={"add_tags": ["orderwatch:recovered"], "remove_tags": ["orderwatch:delayed"]},
)


def test_shopify_tags_are_one_graphql_mutation(http_server: ScriptedHTTPServer) -> None:
    http_server.route(GRAPHQL, Reply(200, TAGS_OK))
    result = shopify(http_server).send(TAGS)
    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_id == ORDER_GID
    (request,) = http_server.requests_to(GRAPHQL)
    assert request.method == "POST" and request.headers["X-Shopify-Access-Token"] == "shpat_test"
    body = request.json()
    assert body["variables"] == {
        "id": ORDER_GID,
        "add": ["orderwatch:recovered"],
        "remove": ["orderwatch:delayed"],
    }
    _run_against_the_admin_schema(body)


@pytest.mark.parametrize(
    ("metadata", "answer", "fields"),
    [
        ({"add_tags": ["orderwatch:delayed"]}, {"tagsAdd": TAGS_OK["data"]["tagsAdd"]},
         {"tagsAdd"}),
        ({"note": "Late: carrier scan gap since Mon 09:00.\nCustomer told on Tue."},
         {"metafieldsSet": NOTE_SET}, {"metafieldsSet"}),
        ({"clear_note": True}, {"metafieldsDelete": NOTE_GONE}, {"metafieldsDelete"}),
        ({"add_tags": ["orderwatch:delayed"], "note": "Late"},
         {"tagsAdd": TAGS_OK["data"]["tagsAdd"], "metafieldsSet": NOTE_SET},
         {"tagsAdd", "metafieldsSet"}),
    ],
)  # fmt: skip
def test_shopify_sends_only_the_mutations_it_needs(
    http_server: ScriptedHTTPServer,
    metadata: dict[str, Any],
    answer: dict[str, Any],
    fields: set[str],
) -> None:
    http_server.route(GRAPHQL, Reply(200, {"data": answer}))
    message = Outbound("k", "order_tags", "450789469", "", metadata=metadata)
    result = shopify(http_server).send(message)
    assert result.outcome is Outcome.ACCEPTED, result
    body = http_server.requests_to(GRAPHQL)[0].json()
    _run_against_the_admin_schema(body)
    mutations = r"\b(tagsAdd|tagsRemove|metafieldsSet|metafieldsDelete)\("
    sent = set(re.findall(mutations, body["query"]))
    assert sent == fields
    if "note" in metadata:  # our own metafield, never the merchant's note or attributes
        (note,) = body["variables"]["note"]
        assert note == {"ownerId": ORDER_GID, "namespace": "orderwatch", "key": "note",
                        "type": "multi_line_text_field", "value": metadata["note"]}  # fmt: skip
    assert "orderUpdate" not in body["query"]


def test_shopify_customer_record_takes_the_same_mutation(http_server: ScriptedHTTPServer) -> None:
    customer = "gid://shopify/Customer/207119551"
    answer = {"data": {"tagsAdd": {"node": {"id": customer}, "userErrors": []}}}
    http_server.route(GRAPHQL, Reply(200, answer))
    message = Outbound("k", "order_tags", customer, "", metadata={"add_tags": ["orderwatch:vip"]})
    assert shopify(http_server).send(message).outcome is Outcome.ACCEPTED
    assert http_server.requests_to(GRAPHQL)[0].json()["variables"]["id"] == customer
    bad = Outbound("k", "order_tags", "gid://shopify/Product/1", "", metadata=message.metadata)
    assert shopify(http_server).send(bad).outcome is Outcome.REJECTED
    assert len(http_server.requests_to(GRAPHQL)) == 1


def test_shopify_unknown_fate_is_retried_because_tags_are_a_set(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route(GRAPHQL, Reply(502), Reply(200, TAGS_OK, delay=1.0), Reply(200, TAGS_OK))
    result = shopify(http_server).send(TAGS)
    assert result.outcome is Outcome.ACCEPTED
    assert [a.status for a in result.history] == [502, None, 200]
    assert len(http_server.requests_to(GRAPHQL)) == 3


def test_shopify_throttled_query_is_not_accepted_with_the_wait(
    http_server: ScriptedHTTPServer,
) -> None:
    throttled = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {
                "requestedQueryCost": 20,
                "actualQueryCost": None,
                "throttleStatus": {
                    "maximumAvailable": 2000.0,
                    "currentlyAvailable": 5,
                    "restoreRate": 100.0,
                },
            }
        },
    }
    http_server.route(GRAPHQL, Reply(200, throttled), Reply(200, TAGS_OK))
    sender = shopify(http_server)
    first = sender.send(TAGS)
    assert first.outcome is Outcome.NOT_ACCEPTED
    assert first.retry_after_s == pytest.approx(0.15)
    assert sender.send(TAGS).outcome is Outcome.ACCEPTED
    assert len(http_server.requests_to(GRAPHQL)) == 2


def test_shopify_user_errors_are_rejected(http_server: ScriptedHTTPServer) -> None:
    errors = {"data": {"tagsAdd": {"node": None, "userErrors": [
        {"field": ["id"], "message": "Order does not exist"}]}}}  # fmt: skip
    http_server.route(GRAPHQL, Reply(200, errors))
    message = Outbound("k", "order_tags", "1", "", metadata={"add_tags": ["orderwatch:delayed"]})
    result = shopify(http_server).send(message)
    assert result.outcome is Outcome.REJECTED and "Order does not exist" in result.detail


ONE_TAG = Outbound("k", "order_tags", "450789469", "", metadata={"add_tags": ["orderwatch:x"]})


@pytest.mark.parametrize(
    ("reply", "outcome", "follow_up"),
    [
        # a 200 that does not show the mutation ran is never "accepted"
        (Reply(200, "<html>Down for maintenance</html>", {"Content-Type": "text/html"}),
         Outcome.UNCERTAIN, None),
        (Reply(200, {"data": None}), Outcome.UNCERTAIN, None),
        (Reply(200, {"data": {"tagsAdd": {"userErrors": []}}}), Outcome.UNCERTAIN, None),
        (Reply(200, {"data": {"tagsAdd": {"node": None, "userErrors": []}}}),
         Outcome.UNCERTAIN, None),
        # top-level errors: nothing ran (refused), a missing scope (ours), or a partial answer
        (Reply(200, {"errors": "Invalid API key or access token"}), Outcome.REJECTED, None),
        (Reply(200, {"errors": [{"message": "Access denied for tagsAdd field.",
                                 "extensions": {"code": "ACCESS_DENIED"}}], "data": None}),
         Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (Reply(200, {"errors": [{"message": "Internal error"}],
                     "data": {"tagsAdd": {"node": {"id": ORDER_GID}, "userErrors": []}}}),
         Outcome.UNCERTAIN, None),
        (Reply(402, {"errors": "Unavailable Shop"}), Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (Reply(423, {"errors": "Locked"}), Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
    ],
)  # fmt: skip
def test_shopify_answers_that_prove_nothing(
    http_server: ScriptedHTTPServer, reply: Reply, outcome: Outcome, follow_up: FollowUp | None
) -> None:
    http_server.route(GRAPHQL, reply)
    result = shopify(http_server).send(ONE_TAG)
    assert (result.outcome, result.follow_up) == (outcome, follow_up), result
    assert "shpat_test" not in repr(result)


# --- ShipBob --------------------------------------------------------------------------

ADDRESS = {
    "recipient_name": "Ann Lee",
    "street_address1": "100 N Racine Ave",
    "street_address2": "Suite 100",
    "city": "Chicago",
    "state": "IL",
    "zip_code": "60607",
    "country_code": "US",
}
SHIPBOB_SPEC = _vendor("shipbob/openapi_shipment_edits.json")
SHIPBOB = Registry().with_resource("urn:shipbob", Resource(SHIPBOB_SPEC, specification=DRAFT202012))
EDITS = "/2026-01/shipment"


def _shipbob_schema(path: str, method: str, where: str) -> Draft202012Validator:
    """A request or response schema of ShipBob's own OpenAPI (refs resolved in the spec)."""
    pointer = "/paths/" + path.replace("~", "~0").replace("/", "~1") + f"/{method}/{where}"
    return Draft202012Validator({"$ref": f"urn:shipbob#{pointer}"}, registry=SHIPBOB)


def _check_shipbob(path: str, method: str, body: Any, answer: Any = None) -> None:
    """The request body against ShipBob's schema, closed to fields it does not define."""
    operation = SHIPBOB_SPEC["paths"][path][method]
    where = "requestBody/content/application~1json/schema"
    errors = [e.message for e in _shipbob_schema(path, method, where).iter_errors(body)]
    assert not errors, errors
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = SHIPBOB_SPEC["components"]["schemas"][name]
    assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])
    if answer is not None:
        response = "responses/200/content/application~1json/schema"
        assert not list(_shipbob_schema(path, method, response).iter_errors(answer))


def shipbob(server: ScriptedHTTPServer, **kw: Any) -> ShipBobRerouteSender:
    return ShipBobRerouteSender(
        enabled=True, base_url=f"{server.url}/2026-01", access_token="sb-pat", **{**FAST, **kw}
    )


def reroute(status: str, details: list[Any], **meta: Any) -> Outbound:
    return Outbound(
        "order-1003:address_issue:1:reroute",
        "reroute",
        "987654",
        "Correct the address",
        metadata={"shipment_status": status, "status_details": details, **meta},
    )


def test_shipbob_address_update_on_a_held_shipment(http_server: ScriptedHTTPServer) -> None:
    path = "/2026-01/shipment/987654:updateAddress"
    answer = {"id": 987654, "is_success": True}  # no `error` (the schema has it non-null)
    http_server.route(path, Reply(200, answer))
    message = reroute("OnHold", ["InvalidAddress"], action="update_address", address=ADDRESS)
    result = shipbob(http_server).send(message)
    assert result.outcome is Outcome.ACCEPTED, result
    (request,) = http_server.requests_to(path)
    assert request.method == "PUT"
    assert request.headers["Authorization"] == "Bearer sb-pat"
    assert "shipbob_channel_id" not in request.headers  # not declared for shipment edits
    assert request.json() == ADDRESS
    _check_shipbob("/2026-01/shipment/{shipmentId}:updateAddress", "put", ADDRESS, answer)


def test_shipbob_address_needs_only_street_and_city(http_server: ScriptedHTTPServer) -> None:
    path = "/2026-01/shipment/987654:updateAddress"
    http_server.route(path, Reply(200, {"id": 987654, "is_success": True}))
    minimal = {"street_address1": "1 Main St", "city": "Chicago", "recipient_name": None}
    sender = shipbob(http_server)
    message = reroute("OnHold", [], action="update_address", address=minimal)
    assert sender.send(message).outcome is Outcome.ACCEPTED
    (request,) = http_server.requests_to(path)
    assert request.json() == {"street_address1": "1 Main St", "city": "Chicago"}
    _check_shipbob("/2026-01/shipment/{shipmentId}:updateAddress", "put", request.json())
    no_city = reroute("OnHold", [], action="update_address", address={"street_address1": "x"})
    assert sender.send(no_city).outcome is Outcome.REJECTED
    assert len(http_server.requests_to(path)) == 1


def test_shipbob_shipping_service_change(http_server: ScriptedHTTPServer) -> None:
    path = "/2026-01/shipment:bulkUpdateShippingService"
    answer = {"results": [{"id": 987654, "is_success": True}],
              "summary": {"total": 1, "successful": 1, "failed": 0}}  # fmt: skip
    http_server.route(path, Reply(200, answer))
    message = reroute(
        "Processing", [], action="change_shipping_service", shipping_service_id=3, reason="late"
    )
    assert shipbob(http_server).send(message).outcome is Outcome.ACCEPTED
    body = http_server.requests_to(path)[0].json()
    assert body == {"shipment_ids": [987654], "requested_shipping_service_id": 3, "reason": "late"}
    _check_shipbob("/2026-01/shipment:bulkUpdateShippingService", "put", body, answer)


LINE_ITEMS = [
    {"inventory_id": 4411, "quantity": 2, "committed_quantity": 2, "is_lot": False,
     "is_hazmat": False, "product_variant": {"id": 91, "name": "Mug", "sku": "MUG-1"},
     "serial_numbers": None},
    {"inventory_id": 4412, "quantity": 1, "committed_quantity": 1, "is_lot": True,
     "lot": {"lot_number": "L-2026-07", "lot_date": "2027-01-31T00:00:00Z",
             "selection_method": "Specific"},
     "product_variant": {"id": 92, "name": "Tea", "sku": "TEA-1"}, "serial_numbers": []},
]  # fmt: skip
MOVE = reroute("Processing", [], action="change_fulfillment_center", fulfillment_center_id=17)


def test_shipbob_moves_every_line_item_to_another_fulfillment_center(
    http_server: ScriptedHTTPServer,
) -> None:
    """`:updateLineItems` takes the complete list as `:getLineItems` returns it: read, then
    every item back with the new center (and its lot)."""
    answer = {"id": 987654, "is_success": True, "shipment_line_items": []}
    http_server.route(f"{EDITS}/987654:getLineItems", Reply(200, LINE_ITEMS))
    http_server.route(f"{EDITS}/987654:updateLineItems", Reply(200, answer))
    result = shipbob(http_server).send(MOVE)
    assert result.outcome is Outcome.ACCEPTED, result
    assert [a.request.split()[0] for a in result.history] == ["GET", "POST"]
    assert result.attempts == 2
    read, write = http_server.requests
    assert (read.method, write.method) == ("GET", "POST")
    assert write.headers["Authorization"] == "Bearer sb-pat"
    body = write.json()
    assert body == {"items": [
        {"inventory_id": 4411, "quantity": 2, "fulfillment_center_id": 17},
        {"inventory_id": 4412, "quantity": 1, "fulfillment_center_id": 17,
         "lot_number": "L-2026-07", "lot_date": "2027-01-31T00:00:00Z",
         "is_manually_assigned_lot": True},
    ]}  # fmt: skip
    _check_shipbob(f"{EDITS}/{{shipmentId}}:updateLineItems", "post", body, answer)
    items_schema = SHIPBOB_SPEC["components"]["schemas"]["Orders.ShipmentLineItemsViewModel"]
    assert all(set(item) <= set(items_schema["properties"]) for item in body["items"])
    get = f"{EDITS}/{{shipmentId}}:getLineItems"
    response = "responses/200/content/application~1json/schema"
    assert not list(_shipbob_schema(get, "get", response).iter_errors(LINE_ITEMS))


def test_shipbob_move_with_serial_numbers_is_a_task(http_server: ScriptedHTTPServer) -> None:
    items = [{**LINE_ITEMS[0], "serial_numbers": ["SN-1", "SN-2"]}]
    http_server.route(f"{EDITS}/987654:getLineItems", Reply(200, items))
    result = shipbob(http_server).send(MOVE)
    assert result.outcome is Outcome.REJECTED and result.follow_up is FollowUp.OPEN_TASK
    assert "serial numbers" in result.detail and result.attempts == 1
    assert [r.method for r in http_server.requests] == ["GET"]  # nothing written


def test_shipbob_move_whose_read_fails_changed_nothing(http_server: ScriptedHTTPServer) -> None:
    """A GET is retried on unknown fate and changes nothing: if it still fails, the move is
    simply not made yet (pending), and nothing is written."""
    http_server.route(f"{EDITS}/987654:getLineItems", Reply(200, LINE_ITEMS, delay=1.0))
    result = shipbob(http_server, unknown_retries=1).send(MOVE)
    assert result.outcome is Outcome.NOT_ACCEPTED and "nothing was changed" in result.detail
    assert [r.method for r in http_server.requests] == ["GET", "GET"]


def test_shipbob_move_whose_write_times_out_is_uncertain(http_server: ScriptedHTTPServer) -> None:
    http_server.route(f"{EDITS}/987654:getLineItems", Reply(200, LINE_ITEMS))
    http_server.route(
        f"{EDITS}/987654:updateLineItems", Reply(200, {"is_success": True}, delay=1.0)
    )
    result = shipbob(http_server, unknown_retries=3).send(MOVE)
    assert result.outcome is Outcome.UNCERTAIN
    assert [r.method for r in http_server.requests] == ["GET", "POST"]  # the write never twice


def test_shipbob_move_of_an_unknown_shipment_is_a_task(http_server: ScriptedHTTPServer) -> None:
    error = {"code": "NOT_FOUND", "message": "Shipment not found"}
    http_server.route(f"{EDITS}/987654:getLineItems", Reply(404, error))
    result = shipbob(http_server).send(MOVE)
    assert result.outcome is Outcome.REJECTED and result.follow_up is FollowUp.OPEN_TASK
    assert [r.method for r in http_server.requests] == ["GET"]


@pytest.mark.parametrize(
    ("status", "details", "action"),
    [
        ("Completed", ["InTransit"], "update_address"),
        ("Processing", ["Packed"], "update_address"),
        ("Processing", [102], "change_shipping_service"),
        ("Processing", ["Picked"], "change_fulfillment_center"),
        ("Cancelled", [], "update_address"),
        ("LabeledCreated", [], "change_fulfillment_center"),
        ("Processing", [], "split_shipment"),  # not something the API offers
    ],
)
def test_shipbob_offers_nothing_in_this_state_so_the_job_opens_a_task(
    http_server: ScriptedHTTPServer, status: str, details: list[Any], action: str
) -> None:
    message = reroute(status, details, action=action, address=ADDRESS, shipping_service_id=3,
                      fulfillment_center_id=17)  # fmt: skip
    result = shipbob(http_server).send(message)
    assert result.outcome is Outcome.REJECTED
    assert result.follow_up is FollowUp.OPEN_TASK
    assert result.attempts == 0
    assert http_server.requests == []  # ShipBob was not asked


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(200, {"id": 987654, "is_success": False,
                     "error": {"code": "VALIDATION_ERROR", "message": "cannot edit"}}),
         "VALIDATION_ERROR"),
        (Reply(400, {"code": "INVALID_PARAMETER", "message": "city is required"}),
         "INVALID_PARAMETER"),
    ],
)  # fmt: skip
def test_shipbob_refusal_becomes_a_task(
    http_server: ScriptedHTTPServer, reply: Reply, code: str
) -> None:
    path = "/2026-01/shipment/987654:updateAddress"
    http_server.route(path, reply)
    result = shipbob(http_server).send(
        reroute("Processing", [], action="update_address", address=ADDRESS)
    )
    assert result.outcome is Outcome.REJECTED and result.follow_up is FollowUp.OPEN_TASK
    assert code in result.detail


def test_shipbob_200_without_an_answer_is_uncertain(http_server: ScriptedHTTPServer) -> None:
    path = "/2026-01/shipment/987654:updateAddress"
    http_server.route(path, Reply(200, {}))
    result = shipbob(http_server).send(reroute("OnHold", [], action="update_address",
                                               address=ADDRESS))  # fmt: skip
    assert result.outcome is Outcome.UNCERTAIN and len(http_server.requests_to(path)) == 1


def test_shipbob_timeout_is_uncertain_and_not_resent(http_server: ScriptedHTTPServer) -> None:
    path = "/2026-01/shipment/987654:updateAddress"
    http_server.route(path, Reply(200, {"is_success": True}, delay=1.0))
    result = shipbob(http_server, unknown_retries=3).send(
        reroute("OnHold", [401], action="update_address", address=ADDRESS)
    )
    assert result.outcome is Outcome.UNCERTAIN
    assert len(http_server.requests_to(path)) == 1


# --- Slack ----------------------------------------------------------------------------

HOOK = "/services/T000/B000/XXXXSECRET"
ESCALATION = Outbound(
    "order-1004:lost:1:escalate",
    "slack",
    "ops-escalations",
    "VIP order #1004 (<b>$480</b>) lost in transit & promise breaks in 20 h.",
    subject="Escalation: order #1004 lost",
    metadata={
        "packet_url": "https://ops.example.com/packets/1004.html",
        "fields": {"Order": "#1004", "Severity": "critical", "Tier": "vip"},
    },
)


def test_slack_escalation_blocks(http_server: ScriptedHTTPServer) -> None:
    http_server.route(HOOK, Reply(200, "ok", {"Content-Type": "text/plain"}))
    result = slack(http_server.url + HOOK).send(ESCALATION)
    assert result.outcome is Outcome.ACCEPTED
    assert "XXXXSECRET" not in repr(result)  # the webhook URL is the credential
    payload = http_server.requests_to(HOOK)[0].json()
    assert payload["text"].startswith("Escalation: order #1004 lost")
    header, summary, fields, actions = payload["blocks"]
    title = {"type": "plain_text", "text": "Escalation: order #1004 lost"}
    assert header == {"type": "header", "text": title}
    assert summary["text"]["type"] == "mrkdwn"
    text = summary["text"]["text"]
    assert "&lt;b&gt;$480&lt;/b&gt;" in text and "lost in transit &amp; promise" in text
    shown = [f["text"] for f in fields["fields"]]
    assert shown == ["*Order*\n#1004", "*Severity*\ncritical", "*Tier*\nvip"]
    (button,) = actions["elements"]
    assert (
        button["type"] == "button" and button["url"] == "https://ops.example.com/packets/1004.html"
    )


def slack(url: str, **kw: Any) -> SlackWebhookSender:
    return SlackWebhookSender(enabled=True, webhook_url=url, **{**FAST, **kw})


@pytest.mark.parametrize(
    ("reply", "outcome", "follow_up"),
    [
        # Slack's documented webhook errors: the payload's fault ...
        (Reply(400, "invalid_payload"), Outcome.REJECTED, None),
        # ... or the workspace / channel / webhook's: nothing posted, the escalation waits
        (Reply(403, "action_prohibited"), Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (Reply(404, "channel_not_found"), Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (Reply(410, "channel_is_archived"), Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        (Reply(429, "rate_limited", {"Retry-After": "30"}), Outcome.NOT_ACCEPTED, None),
        (Reply(500, "rollup_error"), Outcome.UNCERTAIN, None),
    ],
)
def test_slack_answers(
    http_server: ScriptedHTTPServer, reply: Reply, outcome: Outcome, follow_up: FollowUp | None
) -> None:
    http_server.route(HOOK, reply)
    result = slack(http_server.url + HOOK).send(ESCALATION)
    assert (result.outcome, result.follow_up) == (outcome, follow_up)
    assert str(reply.body) in result.detail  # Slack's own reason, for the ledger
    assert len(http_server.requests_to(HOOK)) == 1
    assert "XXXXSECRET" not in repr(result)


def test_slack_keeps_the_webhook_out_of_urllib3s_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """urllib3 warns "Retrying ... : /services/..." on every connect retry, and logs each
    request line at DEBUG: the webhook path is cut from both, and from the result."""
    closed = f"http://127.0.0.1:{free_port()}{HOOK}"
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        result = slack(closed, connect_retries=2).send(ESCALATION)
    assert result.outcome is Outcome.NOT_ACCEPTED and result.attempts == 3
    retries = [r for r in caplog.records if "Retrying" in r.getMessage()]
    assert len(retries) == 2 and all(r.levelno == logging.WARNING for r in retries)
    assert "XXXXSECRET" not in caplog.text and "/services/T000" not in caplog.text
    assert "XXXXSECRET" not in repr(result)
    assert result.history[0].request.endswith("/services/…")


def test_a_url_error_from_urllib3_never_shows_the_secret() -> None:
    """An error urllib3 raises before any connection quotes the URL: the secret is cut."""
    url = "http://127.0.0.1:99999/services/T000/B000/XXXXSECRET"
    request = Request("POST", url, "POST 127.0.0.1/services/…", secrets=(url,))
    exchange = send(request, RetryPolicy())
    result = exchange.result()
    assert result.outcome is Outcome.NOT_ACCEPTED
    assert "LocationParseError" in (result.history[0].error or "")
    assert "XXXXSECRET" not in repr(result)


def test_slack_block_kit_limits(http_server: ScriptedHTTPServer) -> None:
    """Header 150, section 3000, ten fields of at most 2000, a button url of at most 3000;
    texts are cut before escaping, so no `&amp;` is split."""
    http_server.route(HOOK, Reply(200, "ok", {"Content-Type": "text/plain"}))
    long_url = "https://ops.example.com/packets/" + "p" * 3000
    message = Outbound(
        "k", "slack", "ops", "Tom & Jerry " * 400, subject="H" * 200,
        metadata={"fields": {f"field {i}": "&" * 2100 for i in range(12)},
                  "packet_url": long_url},
    )  # fmt: skip
    assert slack(http_server.url + HOOK).send(message).outcome is Outcome.ACCEPTED
    payload = http_server.requests_to(HOOK)[0].json()
    header, summary, fields, packet = payload["blocks"]
    # Block Kit's published limits, written out (not the module's constants)
    assert len(header["text"]["text"]) == 150
    text = summary["text"]["text"]
    assert 3000 - len("&amp;") < len(text) <= 3000
    shown = [f["text"] for f in fields["fields"]]
    assert len(shown) == 10 and all(1900 < len(t) <= 2000 for t in shown)
    for cut in (text, payload["text"], *shown):
        assert not re.search(r"&(?!amp;|lt;|gt;)", cut), cut[-12:]  # every & is whole
    assert packet["type"] == "context"  # too long for a button: shown, not linked


def _note(**meta: Any) -> Outbound:
    return Outbound("k", "ticket_note", "7", "n", metadata=meta)


def _tags(**meta: Any) -> Outbound:
    return Outbound("k", "order_tags", "1", "", metadata=meta)


UNUSABLE = [
    ("twilio", Outbound("k", "email", "+14155550123", "x")),  # a channel it does not carry
    ("twilio", Outbound("k", "sms", "0044 20 1234", "x")),
    ("twilio", Outbound("k", "sms", "+14155550123", "x" * 1601)),
    ("zendesk", _note(status="new")),  # a ticket cannot go back to new
    ("zendesk", _note(group_id="support")),
    ("zendesk", _note(assignee_id=True)),
    ("zendesk", _note(tags="a,b")),
    ("zendesk", Outbound("k", "ticket_create", "#1", "p", subject="s", metadata={
        "requester": "ann@example.com"})),
    ("shopify", _tags()),
    ("shopify", _tags(note="x", clear_note=True)),
    ("shopify", _tags(note=3)),
    ("shopify", _tags(clear_note="yes")),
    ("shopify", _tags(add_tags=["a"], remove_tags=["a"])),
    ("shopify", _tags(add_tags="a")),
    ("shipbob", reroute("Processing", [], action="change_shipping_service",
                        shipping_service_id="ground")),
    ("shipbob", reroute("Processing", [], action="change_fulfillment_center")),
    ("shipbob", reroute("Processing", [], action="update_address",
                        address="100 N Racine Ave, Chicago")),
    ("slack", Outbound("k", "slack", "ops", "x", metadata={"fields": ["Order", "#1"]})),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "message"), UNUSABLE)
def test_a_message_that_cannot_become_a_request_is_rejected_without_one(
    http_server: ScriptedHTTPServer, provider: str, message: Outbound
) -> None:
    senders = {"twilio": twilio, "zendesk": zendesk, "shopify": shopify, "shipbob": shipbob,
               "slack": lambda server: slack(server.url + HOOK)}  # fmt: skip
    result = senders[provider](http_server).send(message)
    assert result.outcome is Outcome.REJECTED and result.detail.startswith("bad request")
    assert result.attempts == 0 and http_server.requests == []
