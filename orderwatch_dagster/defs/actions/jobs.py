"""`exception_actions_job`: decide per exception, act through the sink, record in ops.*."""

import dagster as dg

from orderwatch_dagster.defs.actions.resources import ActionControls, ActionSink, is_replay
from orderwatch_dagster.defs.actions.senders.consent import quiet_rule
from orderwatch_dagster.defs.resources import Warehouse
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_run import Controls, run_actions
from orderwatch_dagster.lib.policy import load_policy


def _table(counts: dict[str, int], title: str) -> str:
    lines = [f"| {title} | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join(lines)


@dg.op(description="Sync the ledger, decide per order, act, record, write packets and the page")
def act_on_exceptions(
    context: dg.OpExecutionContext,
    warehouse: Warehouse,
    action_sink: ActionSink,
    action_controls: ActionControls,
) -> None:
    now = settings.now()
    policy = load_policy()
    controls = Controls(
        kill_switch=action_controls.kill_switch,
        dry_run=action_controls.dry_run,
        replay=is_replay(now),
        max_messages=action_controls.max_messages,
        shop_name=action_controls.shop_name,
        quiet_until=quiet_rule(policy.quiet_hours),
        packet_base_url=action_controls.packet_base_url,
        reroute_shipping_service_id=action_controls.reroute_shipping_service_id,
        live_channels=frozenset(action_sink.live_channels()),
    )
    with warehouse.connect() as session:
        report = run_actions(
            session,
            action_sink.send,
            controls,
            policy,
            now,
            context.run_id,
            action_sink.outbox_path(),
            context.log.info,
        )
    if report.mode == "busy":  # nothing was read or done: no ledger observation of zeros
        raise dg.Failure(description=report.failure, metadata={"alerts": report.alerts})
    meta = report.as_metadata()
    context.log_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey(["ops", "exception_ledger"]),
            metadata={
                **{k: v for k, v in meta.items() if not isinstance(v, dict)},
                "actions": dg.MetadataValue.md(_table(meta["actions"], "action")),
                "messages": dg.MetadataValue.md(_table(meta["messages"], "outcome")),
                "held": dg.MetadataValue.md(_table(meta["held"], "held back because")),
                "agent_decisions": dg.MetadataValue.md(
                    _table(meta["agent_decisions"], "agent decision read back")
                ),
                "policy_version": policy.version,
                "live_channels": ", ".join(action_sink.live_channels()) or "none (outbox)",
            },
        )
    )
    for alert in report.alerts:
        context.log.warning(alert)
    if report.failure:
        raise dg.Failure(
            description=f"stopped: {report.failure}", metadata={"alerts": report.alerts}
        )


@dg.job(
    description="Act on marts.order_exceptions: tasks, messages, escalations, one ledger "
    "(launched by exception_actions_sensor; safe by default, see policy.yaml).",
    executor_def=dg.in_process_executor,
)
def exception_actions_job() -> None:
    act_on_exceptions()
