"""The action policy: a versioned YAML file (orderwatch_dagster/defs/actions/policy.yaml),
validated on load, that maps an exception (type × tier × severity × value) to actions.

A bad file fails loudly with the line and the field (`PolicyError: policy.yaml line 42,
rules[3].actions[0].notify_customer.channel: 'fax' is not one of ['email', 'sms']`). The
thresholds that shape detection (risk threshold by tier and slack, severity) live in the same
file, so one version number describes everything that decided an action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "defs" / "actions" / "policy.yaml"

EXCEPTION_TYPES = (
    "ship_late",
    "no_first_scan",
    "scan_gap",
    "carrier_exception",
    "inventory_hold",
    "address_issue",
    "other_hold",
    "lost",
    "predicted_late",
    "promise_missed",
)
SEVERITIES = ("low", "medium", "high", "critical")
TIERS = ("standard", "vip")
ACTION_KINDS = ("notify_customer", "create_task", "request_reroute", "escalate", "human_review")
CHANNELS = ("email", "sms")
TEMPLATES = ("delay_notice", "carrier_issue", "address_check", "lost_parcel")
HUMAN_KINDS = ("escalate", "human_review")

_NUMBER = {"type": "number"}
_CLOCK = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}  # HH:MM
_SEVERITY = {"enum": list(SEVERITIES)}
_BAND = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"max_slack_hours": _NUMBER, "adjust": _NUMBER, "level": _SEVERITY},
}
_CONDITION = {"min_severity": _SEVERITY}
_OPEN_WHEN = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "always": {"type": "boolean"},
        "min_hours": {"type": "number", "minimum": 0},
        "max_slack_hours": _NUMBER,
        "model_confirms": {"type": "boolean"},
        "until_closed": {"type": "boolean"},
    },
}
_ACTION = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "notify_customer": {
            "type": "object",
            "additionalProperties": False,
            "required": ["channel", "template"],
            "properties": {
                "channel": {"enum": list(CHANNELS)},
                "template": {"enum": list(TEMPLATES)},
                **_CONDITION,
            },
        },
        "create_task": {
            "type": "object",
            "additionalProperties": False,
            "required": ["queue"],
            "properties": {"queue": {"type": "string", "minLength": 1}, **_CONDITION},
        },
        "request_reroute": {
            "type": "object",
            "additionalProperties": False,
            "properties": {**_CONDITION},
        },
        "escalate": {
            "type": "object",
            "additionalProperties": False,
            "required": ["to"],
            "properties": {"to": {"type": "string", "minLength": 1}, **_CONDITION},
        },
        "human_review": {
            "type": "object",
            "additionalProperties": False,
            "required": ["reason"],
            "properties": {"reason": {"type": "string", "minLength": 1}, **_CONDITION},
        },
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "risk", "severity", "freshness", "messages", "rules"],
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "risk": {
            "type": "object",
            "additionalProperties": False,
            "required": ["threshold", "slack_bands", "exit_margin"],
            "properties": {
                "threshold": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": list(TIERS),
                    "properties": {
                        t: {"type": "number", "minimum": 0, "maximum": 1} for t in TIERS
                    },
                },
                "slack_bands": {"type": "array", "minItems": 1, "items": _BAND},
                "exit_margin": {"type": "number", "minimum": 0, "maximum": 1},
                "min_threshold": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "detection": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "confirm_margin": {"type": "number", "minimum": 0, "maximum": 1},
                "open_when": {
                    "type": "object",
                    "propertyNames": {"enum": list(EXCEPTION_TYPES)},
                    "additionalProperties": _OPEN_WHEN,
                },
            },
        },
        "severity": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slack_levels"],
            "properties": {
                "slack_levels": {"type": "array", "minItems": 1, "items": _BAND},
                "vip_bump": {"type": "integer", "minimum": 0},
                "high_value": _NUMBER,
                "high_value_bump": {"type": "integer", "minimum": 0},
                "type_floor": {
                    "type": "object",
                    "propertyNames": {"enum": list(EXCEPTION_TYPES)},
                    "additionalProperties": _SEVERITY,
                },
            },
        },
        "freshness": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_age_hours": {"type": "object", "additionalProperties": _NUMBER},
                "depends_on": {
                    "type": "object",
                    "propertyNames": {"enum": list(EXCEPTION_TYPES)},
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "messages": {
            "type": "object",
            "additionalProperties": False,
            "required": ["max_per_run", "backfill_window_hours", "cooldown_hours"],
            "properties": {
                "max_per_run": {"type": "integer", "minimum": 0},
                "backfill_window_hours": {"type": "number", "minimum": 0},
                "cooldown_hours": {
                    "type": "object",
                    "propertyNames": {"enum": list(CHANNELS)},
                    "additionalProperties": _NUMBER,
                },
                "message_priority": {
                    "type": "object",
                    "propertyNames": {"enum": list(TEMPLATES)},
                    "additionalProperties": {"type": "integer"},
                },
                "quiet_hours": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["start", "end"],
                    "properties": {"start": _CLOCK, "end": _CLOCK},
                },
            },
        },
        "close_the_loop": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "status_ticket": {"enum": ["public_reply", "internal_note", "none"]},
                "on_track_reply_status": {"enum": ["pending", "solved"]},
            },
        },
        "rules": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "why", "match", "actions"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                    "why": {"type": "string", "minLength": 1},
                    "match": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "types": {"type": "array", "items": {"enum": list(EXCEPTION_TYPES)}},
                            "tiers": {"type": "array", "items": {"enum": list(TIERS)}},
                            "min_severity": _SEVERITY,
                            "min_order_value": _NUMBER,
                        },
                    },
                    "actions": {"type": "array", "items": _ACTION},
                },
            },
        },
    },
}


class PolicyError(ValueError):
    """A policy file that cannot be used, with the line and the field at fault."""


@dataclass(frozen=True)
class Action:
    kind: str  # one of ACTION_KINDS
    params: dict[str, Any]

    @property
    def target(self) -> str:
        """The channel/template, queue or person an action goes to, for the ledger."""
        p = self.params
        if self.kind == "notify_customer":
            return f"{p['channel']}:{p['template']}"
        return str(p.get("queue") or p.get("to") or p.get("reason") or "3pl")


@dataclass(frozen=True)
class Rule:
    id: str
    why: str
    line: int  # where the rule starts in the policy file
    types: tuple[str, ...]
    tiers: tuple[str, ...]
    min_severity: str | None
    min_order_value: float | None
    actions: tuple[tuple[Action, str | None], ...]  # (action, min_severity) in order

    def matches(self, exception_type: str, tier: str, severity: str, value: float) -> bool:
        return (
            (not self.types or exception_type in self.types)
            and (not self.tiers or tier in self.tiers)
            and (self.min_severity is None or _rank(severity) >= _rank(self.min_severity))
            and (self.min_order_value is None or value >= self.min_order_value)
        )

    def actions_for(self, severity: str) -> list[Action]:
        return [a for a, floor in self.actions if floor is None or _rank(severity) >= _rank(floor)]


@dataclass(frozen=True)
class Decision:
    rule: Rule
    actions: list[Action]
    policy_version: int
    source: str

    @property
    def policy_line(self) -> str:
        """The policy line shown in packets: why this happened, and where it is written."""
        return f"{self.source} v{self.policy_version} line {self.rule.line} ({self.rule.id})"

    @property
    def recommended(self) -> str:
        return ", ".join(f"{a.kind}({a.target})" for a in self.actions) or "none"


@dataclass(frozen=True)
class Policy:
    version: int
    source: str
    raw: dict[str, Any]
    rules: tuple[Rule, ...]
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict, repr=False)

    def decide(self, exception_type: str, tier: str, severity: str, order_value: float) -> Decision:
        for rule in self.rules:
            if rule.matches(exception_type, tier, severity, order_value):
                return Decision(rule, rule.actions_for(severity), self.version, self.source)
        raise PolicyError(f"{self.source}: no rule matches {exception_type}/{tier}/{severity}")

    # -- detection thresholds -------------------------------------------------------
    def risk_threshold(self, tier: str, slack_hours: float | None) -> float:
        risk = self.raw["risk"]
        base = float(risk["threshold"].get(tier, risk["threshold"]["standard"]))
        adjust = _band(risk["slack_bands"], slack_hours).get("adjust", 0.0)
        return max(float(risk.get("min_threshold", 0.0)), base + float(adjust))

    @property
    def exit_margin(self) -> float:
        return float(self.raw["risk"]["exit_margin"])

    def lasts_until_closed(self, exception_type: str) -> bool:
        """Whether an episode of this type outlives its flag, until the order closes."""
        spec = self.raw.get("detection", {}).get("open_when", {}).get(exception_type, {})
        return bool(spec.get("until_closed"))

    def opens(
        self,
        exception_type: str,
        tier: str,
        held_hours: float,
        slack_hours: float | None,
        probability: float | None,
    ) -> str | None:
        """Why an active rule flag of this type opens an exception now, or None while it is
        not yet material (policy `detection.open_when`; a type not listed opens at once)."""
        detection = self.raw.get("detection", {})
        spec = detection.get("open_when", {}).get(exception_type)
        if spec is None or spec.get("always"):
            return "rule flag"
        if "min_hours" in spec and held_hours >= float(spec["min_hours"]):
            return f"flagged for {held_hours:.0f} h (policy: {spec['min_hours']:g} h)"
        limit = spec.get("max_slack_hours")
        if limit is not None and slack_hours is not None and slack_hours <= float(limit):
            return f"{slack_hours:.0f} h of slack left (policy: {float(limit):g} h)"
        if spec.get("model_confirms") and probability is not None:
            threshold = self.risk_threshold(tier, slack_hours) - float(
                detection.get("confirm_margin", 0.0)
            )
            if probability >= threshold:
                return f"risk {probability:.2f} confirms it (policy: {threshold:.2f})"
        return None

    def severity(
        self, exception_type: str, tier: str, slack_hours: float | None, order_value: float
    ) -> str:
        conf = self.raw["severity"]
        level = _rank(_band(conf["slack_levels"], slack_hours).get("level", "low"))
        if tier == "vip":
            level += int(conf.get("vip_bump", 0))
        if order_value >= float(conf.get("high_value", float("inf"))):
            level += int(conf.get("high_value_bump", 0))
        floor = conf.get("type_floor", {}).get(exception_type)
        if floor:
            level = max(level, _rank(floor))
        return SEVERITIES[min(level, len(SEVERITIES) - 1)]

    # -- feeds and messages ----------------------------------------------------------
    def feed_max_age_hours(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.raw["freshness"].get("max_age_hours", {}).items()}

    def feeds_for(self, exception_type: str) -> tuple[str, ...]:
        return tuple(self.raw["freshness"].get("depends_on", {}).get(exception_type, ()))

    @property
    def messages(self) -> dict[str, Any]:
        return self.raw["messages"]

    def message_priority(self, template: str) -> int:
        return int(self.messages.get("message_priority", {}).get(template, 99))

    @property
    def quiet_hours(self) -> tuple[time, time] | None:
        """SMS quiet hours (start, end) in the customer's local time; None: the job's default."""
        window = self.messages.get("quiet_hours")
        if not window:
            return None
        return time.fromisoformat(window["start"]), time.fromisoformat(window["end"])

    @property
    def on_track_reply_status(self) -> str:
        """What a status ticket answered on track is set to: pending | solved."""
        return str(self.raw.get("close_the_loop", {}).get("on_track_reply_status", "pending"))

    @property
    def recovery_update(self) -> str:
        """What a recovered order's status ticket gets: public_reply | internal_note | none."""
        return str(self.raw.get("close_the_loop", {}).get("status_ticket", "internal_note"))


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def _band(bands: Sequence[dict[str, Any]], slack_hours: float | None) -> dict[str, Any]:
    """The first band whose max_slack_hours covers the slack (unknown slack: the last band)."""
    for band in bands:
        limit = band.get("max_slack_hours")
        if limit is None or (slack_hours is not None and slack_hours <= limit):
            return band
    return bands[-1]


def _line_map(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Every path in the document → its 1-based line, from PyYAML's node marks."""
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _line_map(value, (*path, key.value), out)
            out[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out)


def _field(path: Sequence[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _nearest_line(lines: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def parse_policy(text: str, source: str = "policy.yaml") -> Policy:
    """Validate and build a policy; any problem is a PolicyError naming line and field."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise PolicyError(f"{source} line {line}: not valid YAML: {error}") from None
    if node is None:
        raise PolicyError(f"{source} line 1: the file is empty")
    lines: dict[tuple[Any, ...], int] = {}
    _line_map(node, (), lines)
    errors = sorted(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(data),
        key=lambda e: _nearest_line(lines, tuple(e.absolute_path)),
    )
    if errors:
        first = errors[0]
        path = tuple(first.absolute_path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PolicyError(
            f"{source} line {_nearest_line(lines, path)}, {_field(path)}: {first.message}{more}"
        )
    rules = tuple(_rule(data, index, lines, source) for index in range(len(data["rules"])))
    return Policy(int(data["version"]), source, data, rules, lines)


def _rule(data: dict[str, Any], index: int, lines: dict[tuple[Any, ...], int], source: str) -> Rule:
    spec = data["rules"][index]
    ids = [r["id"] for r in data["rules"]]
    if ids.count(spec["id"]) > 1:
        line = lines[("rules", index, "id")]
        raise PolicyError(f"{source} line {line}, rules[{index}].id: duplicate id {spec['id']!r}")
    actions: list[tuple[Action, str | None]] = []
    for entry in spec["actions"]:
        ((kind, params),) = entry.items()
        params = dict(params or {})
        floor = params.pop("min_severity", None)
        actions.append((Action(kind, params), floor))
    match = spec["match"]
    return Rule(
        id=spec["id"],
        why=spec["why"],
        line=lines[("rules", index)],
        types=tuple(match.get("types", ())),
        tiers=tuple(match.get("tiers", ())),
        min_severity=match.get("min_severity"),
        min_order_value=match.get("min_order_value"),
        actions=tuple(actions),
    )


def load_policy(path: Path | str | None = None) -> Policy:
    target = Path(path) if path else DEFAULT_POLICY
    return parse_policy(target.read_text(), source=target.name)
