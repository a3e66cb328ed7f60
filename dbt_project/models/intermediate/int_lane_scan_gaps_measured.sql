-- Every gap between consecutive physical carrier scans of a parcel (pre-transit / unknown /
-- cancelled events are not scans; nothing after the first delivery counts) as it was known at
-- some moment, with the parcel's lane = shipping warehouse -> destination region. Input of the
-- lanes' scan-gap thresholds (int_lane_scan_gaps_aggregated). A gap is what the scans known at
-- a moment showed: from gap_known_at (both scans known) until gap_valid_to (null: still one),
-- the known_at of a late scan that falls between them or of a delivery scan before it. So a
-- late scan adds its two gaps from its own known_at and ends the longer gap it splits then,
-- without rewriting what the thresholds of earlier days read. gap_business_hours counts carrier
-- days (Monday to Saturday except holidays) of the shop calendar.
with

shipments as (
    select * from {{ ref('stg_wms__shipments') }}
    where order_id is not null and tracking_number is not null and is_latest_version
),

promises as (
    select * from {{ ref('int_order_promises') }}
),

calendar as (
    select * from {{ ref('int_business_days_enumerated') }}
),

scans as (
    select * from {{ ref('stg_carrier__tracking_events') }}
    where canonical_status not in ('pre_transit', 'unknown', 'cancelled')
),

parcels as (
    select
        shipments.order_id,
        shipments.shipment_id,
        shipments.tracking_number,
        coalesce(shipments.warehouse_name, promises.warehouse_name, 'unknown') as warehouse_name,
        coalesce(promises.destination_region, 'unknown') as destination_region
    from shipments
    inner join promises on shipments.order_id = promises.order_id
),

-- one row per scan time of a tracking number, known from the first event at that time; and
-- the earliest known_at of a delivery scan at or before it (a gap closed after a delivery is
-- not a gap once that delivery is known)
scan_times as (
    select
        tracking_number,
        event_at,
        known_at,
        min(delivered_known_at) over (
            partition by tracking_number order by event_at
            rows between unbounded preceding and current row
        ) as delivered_before_known_at
    from (
        select
            tracking_number,
            event_at,
            min(known_at) as known_at,
            min(case when canonical_status = 'delivered' then known_at end) as delivered_known_at
        from scans
        group by tracking_number, event_at
    ) as per_time
),

-- every earlier scan paired with each scan, with the earliest known_at of the scans between
-- them (the window runs over the earlier scans, nearest first, and stops before the current one)
pairs as (
    select
        closing.tracking_number,
        opening.event_at as previous_scan_at,
        opening.known_at as previous_known_at,
        opening.delivered_before_known_at,
        closing.event_at as scan_at,
        closing.known_at,
        min(opening.known_at) over (
            partition by closing.tracking_number, closing.event_at
            order by opening.event_at desc
            rows between unbounded preceding and 1 preceding
        ) as between_known_at
    from scan_times as closing
    inner join scan_times as opening
        on closing.tracking_number = opening.tracking_number
        and opening.event_at < closing.event_at
),

gaps as (
    select
        tracking_number,
        previous_scan_at,
        scan_at,
        case when previous_known_at > known_at then previous_known_at else known_at end
            as gap_known_at,
        {{ earliest_of(['between_known_at', 'delivered_before_known_at']) }} as gap_valid_to
    from pairs
)

select
    parcels.order_id,
    parcels.shipment_id,
    parcels.tracking_number,
    parcels.warehouse_name,
    parcels.destination_region,
    parcels.warehouse_name || ' -> ' || parcels.destination_region as lane,
    gaps.previous_scan_at,
    gaps.scan_at,
    gaps.gap_known_at,
    gaps.gap_valid_to,
    {{ hours_between('gaps.previous_scan_at', 'gaps.scan_at') }} as gap_hours,
    {{ carrier_clock('gaps.previous_scan_at', 'previous_day') }} as previous_scan_business_clock,
    {{ carrier_clock('gaps.scan_at', 'scan_day') }}
    - {{ carrier_clock('gaps.previous_scan_at', 'previous_day') }} as gap_business_hours
from gaps
inner join parcels on gaps.tracking_number = parcels.tracking_number
inner join calendar as previous_day
    on {{ shop_local_date('gaps.previous_scan_at') }} = previous_day.calendar_date
inner join calendar as scan_day
    on {{ shop_local_date('gaps.scan_at') }} = scan_day.calendar_date
-- a pair of scans was ever consecutive only if nothing between them was known before both
where gaps.gap_valid_to is null or gaps.gap_valid_to > gaps.gap_known_at
