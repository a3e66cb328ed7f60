-- The detection rules, one row per order, evaluated as of "now" (var as_of). For each rule:
--   <rule>_occurred    an episode was observed by now (even if it has resolved since)
--   <rule>_active      the episode is still going on now
--   <rule>_detected_at when the rule first fired (the moment the threshold was crossed)
-- Thresholds are vars (dbt_project.yml): ship_late_grace_hours (0), no_first_scan_business_hours
-- (24, business days of the shop calendar), scan_gap_floor_hours (36) with scan_gap_percentile
-- (0.95) per lane, lost_after_days (7).

with

promises as (
    select * from {{ ref('int_order_promises') }}
),

orders as (
    select * from {{ ref('stg_storefront__orders') }}
),

parcels as (
    select * from {{ ref('int_parcels_summarized') }}
),

milestones as (
    select * from {{ ref('int_shipment_milestones_unioned') }}
),

fulfillment_orders as (
    select * from {{ ref('stg_oms__fulfillment_orders') }}
),

tracking_events as (
    select * from {{ ref('stg_carrier__tracking_events') }}
),

calendar as (
    select * from {{ ref('int_business_days_enumerated') }}
),

gaps as (
    select * from {{ ref('int_lane_scan_gaps_measured') }}
),

lane_thresholds as (
    select * from {{ ref('int_lane_scan_gaps_aggregated') }}
),

as_of as (
    select {{ orderwatch_as_of() }} as as_of
),

-- ship-late: every shipment shipped (the furthest-behind one decides) by ship-by + grace, or
-- the 3PL itself reports the shipment late (ShipBob estimated_fulfillment_date_status
-- PendingLate / FulfilledLate): the earliest warning of a warehouse backlog.
shipping as (
    select
        order_id,
        count(*) as shipment_count,
        count(shipped_at) as shipped_count,
        max(shipped_at) as last_shipped_at,
        min(
            case
                when fulfillment_date_status in ('PendingLate', 'FulfilledLate')
                    then wms_updated_at
            end
        ) as reported_late_at,
        bool_or(fulfillment_date_status = 'PendingLate' and shipped_at is null)
            as is_pending_late
    from parcels
    group by order_id
),

base as (
    select
        promises.order_id,
        promises.promised_ship_by,
        promises.promised_deliver_by,
        {{ add_hours('promises.promised_ship_by', var('ship_late_grace_hours')) }} as ship_deadline,
        orders.is_cancelled,
        orders.cancelled_at,
        case
            when shipping.shipment_count > 0 and shipping.shipped_count = shipping.shipment_count
                then shipping.last_shipped_at
        end as shipped_at,
        shipping.reported_late_at,
        coalesce(shipping.is_pending_late, false) as is_pending_late,
        as_of.as_of
    from promises
    inner join orders on promises.order_id = orders.order_id
    left join shipping on promises.order_id = shipping.order_id
    cross join as_of
),

ship_late_checks as (
    select
        base.*,
        case
            when shipped_at > ship_deadline
                or (shipped_at is null and as_of > ship_deadline
                    and coalesce(cancelled_at, as_of) > ship_deadline)
                then ship_deadline
        end as deadline_missed_at
    from base
),

ship_late as (
    select
        order_id,
        deadline_missed_at is not null or reported_late_at is not null as ship_late_occurred,
        shipped_at is null and not is_cancelled
        and (as_of > ship_deadline or is_pending_late) as ship_late_active,
        case
            when reported_late_at is null then deadline_missed_at
            when deadline_missed_at is null then reported_late_at
            when reported_late_at < deadline_missed_at then reported_late_at
            else deadline_missed_at
        end as ship_late_detected_at
    from ship_late_checks
),

-- no-first-scan: label created, no carrier acceptance within N business hours. The deadline
-- counts whole business days of the shop calendar (a label made on a weekend starts counting
-- at the next business day's midnight), then the remaining hours.
labels as (
    select
        parcels.order_id,
        parcels.shipment_id,
        parcels.label_created_at,
        parcels.accepted_at,
        parcels.is_carrier_terminal,
        {{ to_local_timestamp('parcels.label_created_at', "'" ~ var('shop_time_zone') ~ "'") }}
            as label_local
    from parcels
    where parcels.label_created_at is not null
),

label_starts as (
    select
        labels.*,
        calendar.next_business_day_index as start_index,
        case
            when calendar.is_business_day then labels.label_local
            else cast(start_day.calendar_date as timestamp)
        end as start_local
    from labels
    inner join calendar on cast(labels.label_local as date) = calendar.calendar_date
    inner join calendar as start_day
        on start_day.business_day_index = calendar.next_business_day_index
        and start_day.is_business_day
),

label_deadlines as (
    select
        label_starts.order_id,
        label_starts.shipment_id,
        label_starts.accepted_at,
        label_starts.is_carrier_terminal,
        (
            cast(target_day.calendar_date as timestamp)
            + (label_starts.start_local - cast(cast(label_starts.start_local as date) as timestamp))
            + interval '{{ var("no_first_scan_business_hours") % 24 }} hours'
        ) at time zone '{{ var("shop_time_zone") }}' as scan_deadline
    from label_starts
    inner join calendar as target_day
        on target_day.business_day_index
        = label_starts.start_index + {{ (var('no_first_scan_business_hours') // 24) | int }}
        and target_day.is_business_day
),

no_first_scan as (
    select
        label_deadlines.order_id,
        bool_or(
            label_deadlines.accepted_at > label_deadlines.scan_deadline
            or (label_deadlines.accepted_at is null and as_of.as_of > label_deadlines.scan_deadline)
        ) as no_first_scan_occurred,
        bool_or(
            label_deadlines.accepted_at is null
            and not label_deadlines.is_carrier_terminal
            and as_of.as_of > label_deadlines.scan_deadline
        ) as no_first_scan_active,
        min(
            case
                when label_deadlines.accepted_at > label_deadlines.scan_deadline
                    or (label_deadlines.accepted_at is null
                        and as_of.as_of > label_deadlines.scan_deadline)
                    then label_deadlines.scan_deadline
            end
        ) as no_first_scan_detected_at
    from label_deadlines
    cross join as_of
    group by label_deadlines.order_id
),

-- scan gaps (business hours): a closed gap longer than the lane threshold, or silence since the
-- last scan longer than it (open, not yet delivered / returned). The threshold is crossed at
-- the instant the business-hour clock passes last scan + threshold.
parcel_thresholds as (
    select
        parcels.order_id,
        parcels.shipment_id,
        parcels.last_scan_at,
        parcels.is_carrier_terminal,
        coalesce(lane_thresholds.threshold_hours, overall.threshold_hours) as threshold_hours
    from parcels
    inner join promises on parcels.order_id = promises.order_id
    left join lane_thresholds
        on lane_thresholds.lane = coalesce(parcels.warehouse_name, promises.warehouse_name, 'unknown')
        || ' -> ' || coalesce(promises.destination_region, 'unknown')
    cross join (select threshold_hours from lane_thresholds where lane = '*') as overall
),

closed_gap_checks as (
    select
        gaps.order_id,
        gaps.gap_hours,
        gaps.gap_business_hours,
        gaps.previous_scan_at,
        gaps.previous_scan_business_clock + parcel_thresholds.threshold_hours as breach_clock,
        gaps.gap_business_hours > parcel_thresholds.threshold_hours as is_breach
    from gaps
    inner join parcel_thresholds on gaps.shipment_id = parcel_thresholds.shipment_id
),

closed_gaps as (
    select
        closed_gap_checks.order_id,
        max(closed_gap_checks.gap_business_hours) as max_closed_gap_hours,
        min(
            case
                when closed_gap_checks.is_breach
                    then {{ business_clock_instant('closed_gap_checks.breach_clock', 'breach_day') }}
            end
        ) as first_gap_breach_at,
        min(
            case
                when closed_gap_checks.gap_hours > {{ var('lost_after_days') }} * 24
                    then {{ add_hours('closed_gap_checks.previous_scan_at', var('lost_after_days') * 24) }}
            end
        ) as first_lost_breach_at
    from closed_gap_checks
    left join calendar as breach_day
        on closed_gap_checks.is_breach
        and breach_day.is_business_day
        and breach_day.business_day_index
        = cast(floor(closed_gap_checks.breach_clock / 24.0) as integer) + 1
    group by closed_gap_checks.order_id
),

order_thresholds as (
    select order_id, max(threshold_hours) as scan_gap_threshold_hours
    from parcel_thresholds
    group by order_id
),

-- silence since the last scan of a parcel still with the carrier, in business hours
open_gap_checks as (
    select
        parcel_thresholds.order_id,
        parcel_thresholds.last_scan_at,
        parcel_thresholds.threshold_hours,
        as_of.as_of,
        {{ business_clock('as_of.as_of', 'as_of_day') }}
        - {{ business_clock('parcel_thresholds.last_scan_at', 'last_day') }} as open_business_hours,
        {{ business_clock('parcel_thresholds.last_scan_at', 'last_day') }}
        + parcel_thresholds.threshold_hours as breach_clock
    from parcel_thresholds
    cross join as_of
    inner join calendar as last_day
        on {{ shop_local_date('parcel_thresholds.last_scan_at') }} = last_day.calendar_date
    inner join calendar as as_of_day
        on {{ shop_local_date('as_of.as_of') }} = as_of_day.calendar_date
    where parcel_thresholds.last_scan_at is not null
        and not parcel_thresholds.is_carrier_terminal
),

open_gaps as (
    select
        open_gap_checks.order_id,
        max(open_gap_checks.open_business_hours) as open_gap_hours,
        min(
            case
                when open_gap_checks.open_business_hours > open_gap_checks.threshold_hours
                    then {{ business_clock_instant('open_gap_checks.breach_clock', 'breach_day') }}
            end
        ) as open_gap_breach_at,
        min(
            case
                when {{ hours_between('open_gap_checks.last_scan_at', 'open_gap_checks.as_of') }}
                    > {{ var('lost_after_days') }} * 24
                    then {{ add_hours('open_gap_checks.last_scan_at', var('lost_after_days') * 24) }}
            end
        ) as open_lost_breach_at
    from open_gap_checks
    left join calendar as breach_day
        on open_gap_checks.open_business_hours > open_gap_checks.threshold_hours
        and breach_day.is_business_day
        and breach_day.business_day_index
        = cast(floor(open_gap_checks.breach_clock / 24.0) as integer) + 1
    group by open_gap_checks.order_id
),

-- carrier exceptions: canonical exception statuses, or a delay / exception detail on a scan.
-- available_for_pickup counts: every order here ships to an address, so a parcel left at a
-- pickup point is a failed home delivery (USPS "notice left").
parcel_links as (
    select distinct order_id, tracking_number from parcels where tracking_number is not null
),

exception_events as (
    select
        parcel_links.order_id,
        tracking_events.tracking_number,
        tracking_events.event_at,
        case
            when tracking_events.canonical_status in
                ('delivery_failed', 'address_issue', 'return_to_sender', 'lost',
                 'available_for_pickup')
                then tracking_events.canonical_status
            else lower(tracking_events.status_detail)
        end as exception_reason
    from tracking_events
    inner join parcel_links on tracking_events.tracking_number = parcel_links.tracking_number
    where tracking_events.canonical_status in
        ('delivery_failed', 'address_issue', 'return_to_sender', 'lost', 'available_for_pickup')
        or lower(coalesce(tracking_events.status_detail, '')) in (
            'weather_delay', 'delayed', 'transit_exception', 'delivery_exception', 'damaged',
            'missorted', 'refused', 'address_correction', 'failure', 'held'
        )
        or lower(coalesce(tracking_events.status, '')) in ('failure', 'error', 'exception', 'attemptfail')
),

first_exceptions as (
    select *
    from (
        select
            exception_events.*,
            row_number() over (
                partition by order_id order by event_at, exception_reason
            ) as exception_rank
        from exception_events
    ) as ranked
    where exception_rank = 1
),

active_exceptions as (
    select parcels.order_id, count(*) as active_parcels
    from parcels
    where not parcels.is_carrier_terminal
        and (
            parcels.last_event_status in
                ('delivery_failed', 'address_issue', 'lost', 'available_for_pickup')
            or lower(coalesce(parcels.last_event_status_detail, '')) in (
                'weather_delay', 'delayed', 'transit_exception', 'delivery_exception',
                'damaged', 'missorted', 'refused', 'address_correction', 'failure', 'held'
            )
        )
    group by parcels.order_id
),

return_to_sender as (
    select order_id, min(actual_at) as returned_at
    from milestones
    where milestone = 'return_to_sender'
    group by order_id
),

carrier_exception as (
    select
        base.order_id,
        first_exceptions.order_id is not null or return_to_sender.order_id is not null
            as carrier_exception_occurred,
        coalesce(active_exceptions.active_parcels, 0) > 0 as carrier_exception_active,
        case
            when first_exceptions.event_at is null then return_to_sender.returned_at
            when return_to_sender.returned_at is null then first_exceptions.event_at
            when first_exceptions.event_at < return_to_sender.returned_at
                then first_exceptions.event_at
            else return_to_sender.returned_at
        end as carrier_exception_detected_at,
        coalesce(first_exceptions.exception_reason,
            case when return_to_sender.order_id is not null then 'return_to_sender' end)
            as carrier_exception_reason
    from base
    left join first_exceptions on base.order_id = first_exceptions.order_id
    left join active_exceptions on base.order_id = active_exceptions.order_id
    left join return_to_sender on base.order_id = return_to_sender.order_id
),

-- fulfillment holds: OMS (latest FulfillmentOrder) and the 3PL's history
first_holds as (
    select *
    from (
        select
            order_id,
            actual_at,
            detail as hold_category,
            row_number() over (partition by order_id order by actual_at, detail) as hold_rank
        from milestones
        where milestone = 'fulfillment_hold'
    ) as ranked
    where hold_rank = 1
),

current_holds as (
    select order_id, min(hold_reason_category) as hold_category
    from fulfillment_orders
    where hold_reason is not null and status not in ('closed', 'cancelled')
    group by order_id
),

current_wms_holds as (
    select order_id, count(*) as held_shipments
    from parcels
    where lower(coalesce(wms_status, '')) in ('onhold', 'exception') and shipped_at is null
    group by order_id
),

fulfillment_hold as (
    select
        base.order_id,
        first_holds.order_id is not null as fulfillment_hold_occurred,
        not base.is_cancelled and base.shipped_at is null
        and (current_holds.order_id is not null or current_wms_holds.order_id is not null)
            as fulfillment_hold_active,
        first_holds.actual_at as fulfillment_hold_detected_at,
        coalesce(current_holds.hold_category, first_holds.hold_category) as fulfillment_hold_category
    from base
    left join first_holds on base.order_id = first_holds.order_id
    left join current_holds on base.order_id = current_holds.order_id
    left join current_wms_holds on base.order_id = current_wms_holds.order_id
),

delivery as (
    select
        parcels.order_id,
        case
            when count(parcels.delivered_at) = count(*) then max(parcels.delivered_at)
        end as delivered_at
    from parcels
    group by parcels.order_id
)

select
    base.order_id,
    base.as_of,
    ship_late.ship_late_occurred,
    ship_late.ship_late_active,
    ship_late.ship_late_detected_at,
    coalesce(no_first_scan.no_first_scan_occurred, false) as no_first_scan_occurred,
    coalesce(no_first_scan.no_first_scan_active, false) as no_first_scan_active,
    no_first_scan.no_first_scan_detected_at,
    coalesce(closed_gaps.first_gap_breach_at, open_gaps.open_gap_breach_at) is not null
        as scan_gap_occurred,
    open_gaps.open_gap_breach_at is not null as scan_gap_active,
    case
        when closed_gaps.first_gap_breach_at is null then open_gaps.open_gap_breach_at
        when open_gaps.open_gap_breach_at is null then closed_gaps.first_gap_breach_at
        when closed_gaps.first_gap_breach_at < open_gaps.open_gap_breach_at
            then closed_gaps.first_gap_breach_at
        else open_gaps.open_gap_breach_at
    end as scan_gap_detected_at,
    order_thresholds.scan_gap_threshold_hours,
    closed_gaps.max_closed_gap_hours,
    open_gaps.open_gap_hours,
    carrier_exception.carrier_exception_occurred,
    carrier_exception.carrier_exception_active,
    carrier_exception.carrier_exception_detected_at,
    carrier_exception.carrier_exception_reason,
    fulfillment_hold.fulfillment_hold_occurred,
    fulfillment_hold.fulfillment_hold_active,
    fulfillment_hold.fulfillment_hold_detected_at,
    fulfillment_hold.fulfillment_hold_category,
    coalesce(closed_gaps.first_lost_breach_at, open_gaps.open_lost_breach_at) is not null
        or coalesce(carrier_exception.carrier_exception_reason, '') = 'lost' as lost_occurred,
    open_gaps.open_lost_breach_at is not null as lost_active,
    coalesce(closed_gaps.first_lost_breach_at, open_gaps.open_lost_breach_at) as lost_detected_at,
    coalesce(delivery.delivered_at > base.promised_deliver_by, false)
    or (
        delivery.delivered_at is null
        and not base.is_cancelled
        and base.as_of > base.promised_deliver_by
    ) as promise_missed_occurred,
    delivery.delivered_at is null
    and not base.is_cancelled
    and base.as_of > base.promised_deliver_by as promise_missed_active,
    case
        when delivery.delivered_at > base.promised_deliver_by
            or (delivery.delivered_at is null and not base.is_cancelled
                and base.as_of > base.promised_deliver_by)
            then base.promised_deliver_by
    end as promise_missed_detected_at
from base
inner join ship_late on base.order_id = ship_late.order_id
inner join carrier_exception on base.order_id = carrier_exception.order_id
inner join fulfillment_hold on base.order_id = fulfillment_hold.order_id
left join no_first_scan on base.order_id = no_first_scan.order_id
left join closed_gaps on base.order_id = closed_gaps.order_id
left join open_gaps on base.order_id = open_gaps.order_id
left join order_thresholds on base.order_id = order_thresholds.order_id
left join delivery on base.order_id = delivery.order_id
