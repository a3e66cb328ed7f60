-- Every gap between consecutive physical carrier scans of a parcel (pre-transit / unknown /
-- cancelled events are not scans; nothing after the first delivery counts), with the parcel's
-- lane = shipping warehouse -> destination region, as known with everything known. Input of
-- the lanes' scan-gap thresholds (int_lane_scan_gaps_aggregated). gap_known_at = when both
-- scans were known. gap_business_hours counts only business days of the shop calendar.

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

first_delivery as (
    select tracking_number, min(event_at) as delivered_at
    from scans
    where canonical_status = 'delivered'
    group by tracking_number
),

scan_times as (
    select scans.tracking_number, scans.event_at, min(scans.known_at) as known_at
    from scans
    left join first_delivery on scans.tracking_number = first_delivery.tracking_number
    where first_delivery.delivered_at is null or scans.event_at <= first_delivery.delivered_at
    group by scans.tracking_number, scans.event_at
),

gaps as (
    select
        tracking_number,
        lag(event_at) over (partition by tracking_number order by event_at) as previous_scan_at,
        lag(known_at) over (partition by tracking_number order by event_at) as previous_known_at,
        event_at as scan_at,
        known_at
    from scan_times
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
    case when gaps.previous_known_at > gaps.known_at then gaps.previous_known_at else gaps.known_at end
        as gap_known_at,
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
where gaps.previous_scan_at is not null
