-- One row per order as of "now" (var as_of, else the current timestamp): where it is, what it
-- was promised, how much slack is left, and which rules have fired. The only mart that reads
-- "now" besides the rule flags it joins.

with

orders as (
    select * from {{ ref('stg_storefront__orders') }}
),

promises as (
    select * from {{ ref('int_order_promises') }}
),

milestones as (
    select * from {{ ref('fct_order_milestones') }}
),

parcels as (
    select * from {{ ref('int_parcels_summarized') }}
),

flags as (
    select * from {{ ref('int_order_rule_flags') }}
),

tickets as (
    select * from {{ ref('stg_support__tickets') }}
),

current_progress as (
    select order_id, milestone as progress_milestone, actual_at as progress_at, shipment_count
    from milestones
    where is_current
),

current_ranks as (
    select order_id, milestone_rank as current_rank
    from milestones
    where is_current
),

-- the most recent observation by its own time, progress below the current milestone excluded
-- (a stray in-transit scan after delivery is not the order's last event)
last_events as (
    select *
    from (
        select
            milestones.order_id,
            milestones.milestone,
            milestones.actual_at,
            milestones.evidence,
            row_number() over (
                partition by milestones.order_id
                order by
                    milestones.actual_at desc,
                    milestones.milestone_rank desc nulls last,
                    milestones.milestone
            ) as event_rank
        from milestones
        left join current_ranks on milestones.order_id = current_ranks.order_id
        where milestones.actual_at is not null
            and (
                milestones.milestone_rank is null
                or milestones.milestone_rank >= coalesce(current_ranks.current_rank, 0)
                or milestones.actual_at <= (
                    select max(m2.actual_at) from milestones as m2
                    where m2.order_id = milestones.order_id and m2.is_current
                )
            )
    ) as ranked
    where event_rank = 1
),

reached as (
    select
        order_id,
        max(case when milestone = 'delivered' and is_reached then actual_at end) as delivered_at,
        max(case when milestone = 'carrier_accepted' and is_reached then actual_at end)
            as carrier_accepted_at,
        bool_or(milestone = 'delivered' and is_reached) as is_delivered,
        bool_or(milestone = 'return_to_sender' and is_reached) as is_returned_to_sender
    from milestones
    group by order_id
),

parcel_rollup as (
    select
        order_id,
        max(last_scan_at) as last_scan_at,
        min(carrier) as carrier,
        min(warehouse_name) as warehouse_name,
        count(distinct carrier) as carrier_count,
        case when count(shipped_at) = count(*) then max(shipped_at) end as shipped_at
    from parcels
    group by order_id
),

wismo as (
    select orders.order_id, count(*) as wismo_ticket_count
    from tickets
    inner join orders on tickets.order_name = orders.order_name
    where tickets.is_wismo
    group by orders.order_id
),

joined as (
    select
        orders.order_id,
        orders.order_name,
        orders.placed_at,
        orders.is_cancelled,
        case
            when orders.is_cancelled then 'cancelled'
            when reached.is_returned_to_sender and not reached.is_delivered then 'return_to_sender'
            else coalesce(current_progress.progress_milestone, 'order_placed')
        end as current_milestone,
        last_events.milestone as last_event,
        last_events.actual_at as last_event_at,
        last_events.evidence as last_event_evidence,
        parcel_rollup.last_scan_at,
        {{ hours_between('parcel_rollup.last_scan_at', 'flags.as_of') }} as hours_since_last_scan,
        promises.promised_ship_by,
        promises.promised_deliver_by,
        promises.promise_source,
        parcel_rollup.shipped_at,
        reached.delivered_at,
        {{ hours_between('coalesce(parcel_rollup.shipped_at, flags.as_of)', 'promises.promised_ship_by') }}
            as ship_slack_hours,
        {{ hours_between('coalesce(reached.delivered_at, flags.as_of)', 'promises.promised_deliver_by') }}
            as deliver_slack_hours,
        promises.customer_tier,
        orders.total_price as order_value,
        orders.currency,
        parcel_rollup.carrier,
        promises.service_code,
        coalesce(parcel_rollup.warehouse_name, promises.warehouse_name) as warehouse_name,
        promises.destination_region,
        coalesce(parcel_rollup.warehouse_name, promises.warehouse_name, 'unknown')
        || ' -> ' || coalesce(promises.destination_region, 'unknown') as lane,
        coalesce(current_progress.shipment_count, 0) as shipment_count,
        coalesce(wismo.wismo_ticket_count, 0) as wismo_ticket_count,
        not orders.is_cancelled
        and not coalesce(reached.is_delivered, false)
        and not coalesce(reached.is_returned_to_sender, false) as is_open,
        flags.as_of,
        flags.ship_late_occurred,
        flags.ship_late_active,
        flags.ship_late_detected_at,
        flags.no_first_scan_occurred,
        flags.no_first_scan_active,
        flags.no_first_scan_detected_at,
        flags.scan_gap_occurred,
        flags.scan_gap_active,
        flags.scan_gap_detected_at,
        flags.scan_gap_threshold_hours,
        flags.carrier_exception_occurred,
        flags.carrier_exception_active,
        flags.carrier_exception_detected_at,
        flags.carrier_exception_reason,
        flags.fulfillment_hold_occurred,
        flags.fulfillment_hold_active,
        flags.fulfillment_hold_detected_at,
        flags.fulfillment_hold_category,
        flags.lost_occurred,
        flags.lost_active,
        flags.lost_detected_at,
        flags.promise_missed_occurred,
        flags.promise_missed_active,
        flags.promise_missed_detected_at
    from orders
    inner join promises on orders.order_id = promises.order_id
    inner join flags on orders.order_id = flags.order_id
    left join current_progress on orders.order_id = current_progress.order_id
    left join last_events on orders.order_id = last_events.order_id
    left join reached on orders.order_id = reached.order_id
    left join parcel_rollup on orders.order_id = parcel_rollup.order_id
    left join wismo on orders.order_id = wismo.order_id
)

select
    order_id,
    order_name,
    placed_at,
    current_milestone,
    last_event,
    last_event_at,
    last_event_evidence,
    last_scan_at,
    hours_since_last_scan,
    promised_ship_by,
    promised_deliver_by,
    promise_source,
    shipped_at,
    delivered_at,
    ship_slack_hours,
    deliver_slack_hours,
    customer_tier,
    order_value,
    currency,
    carrier,
    service_code,
    warehouse_name,
    destination_region,
    lane,
    shipment_count,
    wismo_ticket_count,
    is_cancelled,
    is_open,
    promise_missed_occurred as missed_promise,
    {{ hours_between('promised_deliver_by', 'coalesce(delivered_at, as_of)') }} as hours_past_promise,
    ship_late_occurred,
    ship_late_active,
    ship_late_detected_at,
    no_first_scan_occurred,
    no_first_scan_active,
    no_first_scan_detected_at,
    scan_gap_occurred,
    scan_gap_active,
    scan_gap_detected_at,
    scan_gap_threshold_hours,
    carrier_exception_occurred,
    carrier_exception_active,
    carrier_exception_detected_at,
    carrier_exception_reason,
    fulfillment_hold_occurred,
    fulfillment_hold_active,
    fulfillment_hold_detected_at,
    fulfillment_hold_category,
    lost_occurred,
    lost_active,
    lost_detected_at,
    promise_missed_occurred,
    promise_missed_active,
    promise_missed_detected_at,
    as_of
from joined
