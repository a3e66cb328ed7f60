-- One row per ShipBob shipment (parcel): warehouse steps and carrier scans side by side.
-- The rule flags and order_state read parcels from here. No "now" in this model.

with

shipments as (
    select * from {{ ref('stg_wms__shipments') }}
    where order_id is not null
),

milestones as (
    select * from {{ ref('int_shipment_milestones_unioned') }}
    where shipment_id is not null
),

events as (
    select * from {{ ref('stg_carrier__tracking_events') }}
),

trackers as (
    select * from {{ ref('stg_carrier__trackers') }}
),

-- a tracking number can have several trackers (re-created, or EasyPost + AfterShip): one each
tracker_latest as (
    select *
    from (
        select
            trackers.*,
            row_number() over (
                partition by tracking_number order by updated_at desc, tracker_id desc
            ) as tracker_rank
        from trackers
    ) as ranked
    where tracker_rank = 1
),

steps as (
    select
        shipment_id,
        min(case when milestone = 'label_created' then actual_at end) as label_created_at,
        min(case when milestone = 'carrier_accepted' then actual_at end) as accepted_at,
        min(case when milestone = 'delivered' then actual_at end) as delivered_at,
        min(case when milestone = 'return_to_sender' then actual_at end) as returned_at
    from milestones
    group by shipment_id
),

physical_scans as (
    select
        tracking_number,
        max(event_at) as last_scan_at,
        count(*) as scan_count
    from events
    where canonical_status not in ('pre_transit', 'unknown', 'cancelled')
    group by tracking_number
),

-- the latest event by scan time (not by arrival): what the carrier says now
latest_event as (
    select *
    from (
        select
            events.*,
            row_number() over (
                partition by tracking_number order by event_at desc, event_id desc
            ) as event_rank
        from events
    ) as ranked
    where event_rank = 1
)

select
    shipments.order_id,
    shipments.shipment_id,
    shipments.tracking_number,
    shipments.warehouse_name,
    coalesce(tracker_latest.carrier, shipments.carrier) as carrier,
    shipments.status as wms_status,
    shipments.status_detail as wms_status_detail,
    shipments.estimated_fulfillment_date_status as fulfillment_date_status,
    shipments.last_update_at as wms_updated_at,
    shipments.released_at,
    steps.label_created_at,
    coalesce(shipments.actual_fulfillment_date, steps.accepted_at) as shipped_at,
    steps.accepted_at,
    physical_scans.last_scan_at,
    coalesce(physical_scans.scan_count, 0) as scan_count,
    latest_event.event_at as last_event_at,
    latest_event.canonical_status as last_event_status,
    latest_event.status_detail as last_event_status_detail,
    latest_event.message as last_event_message,
    tracker_latest.tracker_id,
    tracker_latest.canonical_status as tracker_status,
    tracker_latest.est_delivery_date,
    steps.delivered_at,
    steps.returned_at,
    -- terminal: the carrier's part is over, so silence is not a gap
    steps.delivered_at is not null
    or steps.returned_at is not null
    or coalesce(tracker_latest.canonical_status, '') in ('delivered', 'return_to_sender', 'cancelled')
        as is_carrier_terminal
from shipments
left join steps on shipments.shipment_id = steps.shipment_id
left join tracker_latest on shipments.tracking_number = tracker_latest.tracking_number
left join physical_scans on shipments.tracking_number = physical_scans.tracking_number
left join latest_event on shipments.tracking_number = latest_event.tracking_number
