"""What an action run leaves for people (lib/action_run.py): a packet per order with an open
exception or an answered ticket (outbox/packets/order-<id>.json + .html), and the ops-queue
page (outbox/queue.html): open exceptions by severity, owner and age, the human queue, links to
the packets; resolved and suppressed ones drop off."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from orderwatch_dagster.lib.action_inputs import RunReport, json_value
from orderwatch_dagster.lib.decide import OrderPlan
from orderwatch_dagster.lib.packets import OrderContext, build_packet, packet_name, write_packet
from orderwatch_dagster.lib.policy import HUMAN_KINDS
from orderwatch_dagster.lib.templating import render_page


class PacketsAndPage:
    """Mixed into the run: reads its ledger, messages and queue as they are after acting."""

    outbox: Path
    now: datetime
    report: RunReport
    ledger: dict[str, dict[str, Any]]
    messages: dict[str, dict[str, Any]]
    queue: dict[str, dict[str, Any]]

    def packets(
        self,
        by_order: Mapping[Any, list[dict[str, Any]]],
        plans: Mapping[Any, OrderPlan],
        ctx: OrderContext,
    ) -> None:
        folder = self.outbox / "packets"
        for order_id, rows in by_order.items():
            plan = plans.get(order_id)
            done = self._done(order_id, rows)
            packet = build_packet(
                ctx,
                order_id,
                rows,
                plan.decisions if plan else [],
                done,
                self.now,
                self.now,
                held=plan.held if plan else (),
            )
            write_packet(folder, packet)
            self.report.packets += 1

    def _done(self, order_id: Any, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        for row in rows:
            for a in self.ledger.get(row["exception_id"], {}).get("actions", []):
                done.append(
                    {"at": a["at"], "what": f"{a['kind']} {a['target']}", "result": a["result"]}
                )
        for m in self.messages.values():
            if m["order_id"] == order_id:
                done.append(
                    {
                        "at": json_value(m["created_at"]),
                        "what": f"message {m['channel']}:{m['template']} ({m['state_key']})",
                        "result": m["status"],
                    }
                )
        return sorted(done, key=lambda d: str(d["at"]))

    def page(self, open_rows: Sequence[Mapping[str, Any]]) -> None:
        order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
        rows = []
        for exc in sorted(open_rows, key=lambda r: (order[r["severity"]], str(r["breach_at"]))):
            entry = self.ledger.get(exc["exception_id"], {})
            if entry.get("status") in ("resolved", "suppressed"):
                continue
            rows.append(
                {
                    **exc,
                    "owner": entry.get("owner", "orderwatch"),
                    "status": entry.get("status", "open"),
                    "age_hours": round((self.now - exc["started_at"]).total_seconds() / 3600, 1),
                    "packet_href": f"packets/{packet_name(exc['order_id'])}.html",
                }
            )
        human = [
            {**q, "packet_href": f"packets/{packet_name(q['order_id'])}.html"}
            for q in self.queue.values()
            if q["status"] == "open" and q["kind"] in HUMAN_KINDS
        ]
        self.outbox.mkdir(parents=True, exist_ok=True)
        html = render_page("queue", rows=rows, human=human, as_of=self.now.isoformat())
        (self.outbox / "queue.html").write_text(html)
