{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}
-- Every milestone observation of every order, from every source system, one row per
-- (order, shipment, milestone) occurrence chosen below. shipment_id is null for order-level
-- milestones (storefront, OMS, returns). Pure event data: nothing here depends on "now".
-- Incremental per ORDER on ingestion time (see the model yml): an incremental run rebuilds
-- every row of each order that has any source row loaded after the watermark, and nothing else.
{%- set watermark = ingestion_watermark('source_ingested_at') if is_incremental() else none %}
{%- set only_touched %}
    {%- if is_incremental() %} and order_id in (select order_id from touched_orders){% endif %}
{%- endset %}

with

{% if is_incremental() -%}
-- orders with a source row loaded after the watermark: latest versions by their own load
-- time, ShipBob states and carrier scans by the load that first carried them (a retried
-- webhook or a late scan with an old vendor time still counts as new), and customers
-- (the tier moves the promise)
touched_orders as (
    select order_id from {{ ref('stg_storefront__orders') }}
    where ingested_at > {{ watermark }}
    union
    select orders.order_id
    from {{ ref('stg_storefront__customers') }} as customers
    inner join {{ ref('stg_storefront__orders') }} as orders
        on customers.customer_id = orders.customer_id
    where customers.ingested_at > {{ watermark }}
    union
    select order_id from {{ ref('stg_oms__fulfillment_orders') }}
    where ingested_at > {{ watermark }}
    union
    -- any new ShipBob version (a new state, or a latest version that changed anything): it
    -- carries each shipment's current state, whose last load is then after the watermark
    select order_id from {{ ref('stg_wms__shipment_status_changes') }}
    where last_ingested_at > {{ watermark }}
    union
    -- a new scan, linked to its order by tracking number (the ShipBob history holds every
    -- tracking number a shipment had)
    select status_changes.order_id
    from {{ ref('stg_carrier__tracking_events') }} as tracking_events
    inner join {{ ref('stg_wms__shipment_status_changes') }} as status_changes
        on tracking_events.tracking_number = status_changes.tracking_number
    where tracking_events.first_ingested_at > {{ watermark }}
    union
    select order_id from {{ ref('stg_returns__returns') }}
    where ingested_at > {{ watermark }}
),

{% endif -%}

orders as (
    select * from {{ ref('stg_storefront__orders') }}
    where order_id is not null and is_latest_version {{ only_touched }}
),

customers as (
    select * from {{ ref('stg_storefront__customers') }}
    where is_latest_version
),

-- every version: a hold shows in the versions of its time, not in the latest one
fulfillment_orders as (
    select * from {{ ref('stg_oms__fulfillment_orders') }}
    where order_id is not null {{ only_touched }}
),

shipments as (
    select * from {{ ref('stg_wms__shipments') }}
    where order_id is not null and is_latest_version {{ only_touched }}
),

status_changes as (
    select * from {{ ref('stg_wms__shipment_status_changes') }}
    where order_id is not null {{ only_touched }}
),

tracking_events as (
    select * from {{ ref('stg_carrier__tracking_events') }}
),

-- every version: the outcome is known from the version that shows it
returns_ as (
    select * from {{ ref('stg_returns__returns') }}
    where order_id is not null {{ only_touched }}
),

-- routing changes move the promise (handling days per warehouse), so the order's own rows carry
-- the latest OMS update time too: an incremental fct run then recomputes that order.
routing_updates as (
    select order_id, max(updated_at) as routed_updated_at
    from fulfillment_orders
    group by order_id
),

storefront_events as (
    select
        orders.order_id,
        cast(null as bigint) as shipment_id,
        'order_placed' as milestone,
        orders.placed_at as actual_at,
        'storefront' as source_system,
        'shopify:order:' || cast(orders.order_id as varchar) as evidence_id,
        'order ' || orders.order_name || ' placed' as evidence_message,
        cast(null as varchar) as detail,
        case
            when routing_updates.routed_updated_at > orders.updated_at
                then routing_updates.routed_updated_at
            else orders.updated_at
        end as source_updated_at,
        orders.placed_at as known_at
    from orders
    left join routing_updates on orders.order_id = routing_updates.order_id

    union all

    select
        order_id,
        cast(null as bigint),
        'payment_captured',
        payment_captured_at,
        'storefront',
        'shopify:order:' || cast(order_id as varchar),
        'payment ' || coalesce(financial_status, ''),
        cast(null as varchar),
        updated_at,
        payment_captured_at
    from orders
    where payment_captured_at is not null

    union all

    select
        order_id,
        cast(null as bigint),
        'cancelled',
        coalesce(cancelled_at, updated_at),
        'storefront',
        'shopify:order:' || cast(order_id as varchar),
        'order cancelled: ' || coalesce(cancel_reason, 'no reason given'),
        cancel_reason,
        updated_at,
        coalesce(cancelled_at, updated_at)
    from orders
    where is_cancelled
),

-- OMS holds: the first version of each FulfillmentOrder that shows a hold, at its update time
-- (a hold is state without its own time: known from the version that shows it).
oms_holds as (
    select order_id, fulfillment_order_id, hold_reason, hold_reason_category, updated_at
    from (
        select
            fulfillment_orders.*,
            row_number() over (
                partition by fulfillment_order_id order by known_at, version_number
            ) as hold_version_rank
        from fulfillment_orders
        where hold_reason is not null
    ) as held
    where hold_version_rank = 1
),

oms_events as (
    select
        order_id,
        cast(null as bigint) as shipment_id,
        'fulfillment_hold' as milestone,
        updated_at as actual_at,
        'oms' as source_system,
        'shopify:fulfillment_order:' || cast(fulfillment_order_id as varchar) as evidence_id,
        'fulfillment hold: ' || hold_reason as evidence_message,
        hold_reason_category as detail,
        updated_at as source_updated_at,
        updated_at as known_at
    from oms_holds

    union all

    select
        order_id,
        cast(null as bigint),
        case hold_reason_category when 'inventory' then 'backordered' else 'address_issue' end,
        updated_at,
        'oms',
        'shopify:fulfillment_order:' || cast(fulfillment_order_id as varchar),
        'fulfillment hold: ' || hold_reason,
        hold_reason_category,
        updated_at,
        updated_at
    from oms_holds
    where hold_reason_category in ('inventory', 'address')
),

-- Warehouse states from every ShipBob version (the 3PL's history), classified once.
classified_changes as (
    select
        status_changes.*,
        lower(coalesce(status_changes.status, '')) as status_key,
        lower(coalesce(status_changes.status_detail, '')) as detail_key
    from status_changes
),

warehouse_observations as (
    select
        order_id,
        shipment_id,
        observed_at,
        status,
        status_detail,
        case
            when detail_key = 'picked' then 'picked'
            when detail_key = 'packed' then 'packed'
            -- ShipBob's status reference: Processing / Labeled (102); older API versions say
            -- LabeledCreated
            when detail_key = 'labeled'
                or status_key in ('labeledcreated', 'labelcreated', 'completed') then 'label_created'
        end as progress_milestone,
        case
            when detail_key like '%stock%' or detail_key like '%inventory%' then 'inventory'
            when detail_key like '%address%' then 'address'
            when status_key in ('onhold', 'exception') then 'other'
        end as hold_category
    from classified_changes
),

warehouse_candidates as (
    select
        order_id, shipment_id, progress_milestone as milestone, observed_at, status,
        status_detail, cast(null as varchar) as detail
    from warehouse_observations
    where progress_milestone is not null

    union all

    select
        order_id, shipment_id, 'fulfillment_hold', observed_at, status, status_detail, hold_category
    from warehouse_observations
    where hold_category is not null

    union all

    select
        order_id, shipment_id,
        case hold_category when 'inventory' then 'backordered' else 'address_issue' end,
        observed_at, status, status_detail, hold_category
    from warehouse_observations
    where hold_category in ('inventory', 'address')
),

warehouse_first as (
    select
        *,
        row_number() over (
            partition by order_id, shipment_id, milestone
            order by observed_at, status, status_detail
        ) as occurrence
    from warehouse_candidates
),

warehouse_events as (
    select
        order_id,
        shipment_id,
        'released_to_warehouse' as milestone,
        released_at as actual_at,
        'wms' as source_system,
        'shipbob:order:' || cast(wms_order_id as varchar) as evidence_id,
        'received by ' || coalesce(warehouse_name, 'the 3PL') as evidence_message,
        warehouse_name as detail,
        last_update_at as source_updated_at,
        released_at as known_at
    from shipments

    union all

    select
        order_id,
        shipment_id,
        milestone,
        observed_at,
        'wms',
        'shipbob:shipment:' || cast(shipment_id as varchar),
        'shipment ' || coalesce(status, '') || coalesce(' / ' || status_detail, ''),
        detail,
        observed_at,
        observed_at
    from warehouse_first
    where occurrence = 1
),

-- Carrier scans are linked to the shipment by tracking number. One scan can evidence several
-- milestones (any physical scan = accepted; an in_transit scan is also the in_transit milestone).
parcels as (
    select distinct order_id, shipment_id, tracking_number
    from shipments
    where tracking_number is not null
),

scan_milestones as (
    select canonical_status, milestone, pick_latest
    from (
        values
            ('in_transit', 'carrier_accepted', false),
            ('out_for_delivery', 'carrier_accepted', false),
            ('delivered', 'carrier_accepted', false),
            ('available_for_pickup', 'carrier_accepted', false),
            ('delivery_failed', 'carrier_accepted', false),
            ('address_issue', 'carrier_accepted', false),
            ('return_to_sender', 'carrier_accepted', false),
            ('lost', 'carrier_accepted', false),
            ('in_transit', 'in_transit', true),
            ('out_for_delivery', 'out_for_delivery', false),
            ('delivered', 'delivered', false),
            ('delivery_failed', 'delivery_failed', false),
            ('address_issue', 'address_issue', false),
            ('return_to_sender', 'return_to_sender', false)
    ) as mapping (canonical_status, milestone, pick_latest)
),

carrier_candidates as (
    select
        parcels.order_id,
        parcels.shipment_id,
        scan_milestones.milestone,
        scan_milestones.pick_latest,
        tracking_events.tracker_id,
        tracking_events.event_at,
        tracking_events.status,
        tracking_events.status_detail,
        tracking_events.canonical_status,
        tracking_events.message,
        tracking_events.first_observed_at,
        tracking_events.known_at,
        -- the earliest (latest, for pick_latest) scan known before this one was known
        min(tracking_events.event_at) over (
            partition by parcels.order_id, parcels.shipment_id, scan_milestones.milestone
            order by tracking_events.known_at, tracking_events.event_at, tracking_events.event_id
            rows between unbounded preceding and 1 preceding
        ) as earlier_known_first_at,
        max(tracking_events.event_at) over (
            partition by parcels.order_id, parcels.shipment_id, scan_milestones.milestone
            order by tracking_events.known_at, tracking_events.event_at, tracking_events.event_id
            rows between unbounded preceding and 1 preceding
        ) as earlier_known_last_at
    from tracking_events
    inner join parcels on tracking_events.tracking_number = parcels.tracking_number
    inner join scan_milestones
        on tracking_events.canonical_status = scan_milestones.canonical_status
),

carrier_events as (
    select
        order_id,
        shipment_id,
        milestone,
        event_at as actual_at,
        'carrier' as source_system,
        'tracker:' || tracker_id as evidence_id,
        canonical_status || ' (' || coalesce(status, '') || '/' || coalesce(status_detail, '')
        || '): ' || coalesce(message, '') as evidence_message,
        status_detail as detail,
        coalesce(first_observed_at, event_at) as source_updated_at,
        known_at
    from carrier_candidates
    -- every scan that was the milestone's first (latest) at some moment of knowledge: a late
    -- scan dated earlier does not erase what was known before it arrived (the as-of layer picks
    -- among the candidates known by its moment; fct_order_milestones picks over all)
    where (pick_latest and (earlier_known_last_at is null or event_at > earlier_known_last_at))
        or (not pick_latest and (earlier_known_first_at is null or event_at < earlier_known_first_at))
),

return_versions as (
    select
        returns_.*,
        row_number() over (
            partition by return_id, is_return_to_sender order by known_at, version_number
        ) as outcome_version_rank
    from returns_
    where order_id is not null
),

return_events as (
    select
        order_id,
        cast(null as bigint) as shipment_id,
        case when is_return_to_sender then 'return_to_sender' else 'return_started' end
            as milestone,
        created_at as actual_at,
        'returns' as source_system,
        'loop:return:' || cast(return_id as varchar) as evidence_id,
        'return ' || coalesce(outcome, '') || ' (' || coalesce(state, '') || ')'
            as evidence_message,
        outcome as detail,
        updated_at as source_updated_at,
        -- the outcome is state: known from the first version that shows it
        case when known_at > created_at then known_at else created_at end as known_at
    from return_versions
    where outcome_version_rank = 1
),

-- the latest load of anything this order's rows (or its promise) are built from; every row of
-- the order carries it, so fct_order_milestones can find the orders an incremental run touched
order_loads as (
    select order_id, max(ingested_at) as source_ingested_at
    from (
        select order_id, ingested_at from orders
        union all
        select orders.order_id, customers.ingested_at
        from orders
        inner join customers on orders.customer_id = customers.customer_id
        union all
        select order_id, ingested_at from fulfillment_orders
        union all
        select order_id, ingested_at from shipments
        union all
        select order_id, last_ingested_at from status_changes
        union all
        select parcels.order_id, tracking_events.first_ingested_at
        from tracking_events
        inner join parcels on tracking_events.tracking_number = parcels.tracking_number
        union all
        select order_id, ingested_at from returns_
    ) as loads
    group by order_id
),

unioned as (
    select * from storefront_events
    union all
    select * from oms_events
    union all
    select * from warehouse_events
    union all
    select * from carrier_events
    union all
    select * from return_events
),

-- Decisive candidates over time: per (order, shipment, milestone), in the order they became
-- known, keep a candidate only when it beats every one known before it (earlier; later for
-- in_transit, the latest in-transit scan). Each kept candidate is THE decisive one from its
-- known_at until the next kept one's (valid_to): the as-of layer joins on that interval.
ordered as (
    select
        unioned.*,
        min(actual_at) over (
            partition by order_id, shipment_id, milestone
            order by known_at, actual_at, evidence_id, evidence_message
            rows between unbounded preceding and 1 preceding
        ) as earlier_known_first_at,
        max(actual_at) over (
            partition by order_id, shipment_id, milestone
            order by known_at, actual_at, evidence_id, evidence_message
            rows between unbounded preceding and 1 preceding
        ) as earlier_known_last_at
    from unioned
    where actual_at is not null
),

records as (
    select *
    from ordered
    where (milestone = 'in_transit' and (earlier_known_last_at is null or actual_at > earlier_known_last_at))
        or (milestone <> 'in_transit' and (earlier_known_first_at is null or actual_at < earlier_known_first_at))
)

select
    records.order_id,
    shipment_id,
    milestone,
    actual_at,
    source_system,
    evidence_id,
    evidence_message,
    detail,
    source_updated_at,
    records.known_at,
    lead(records.known_at) over (
        partition by records.order_id, shipment_id, milestone
        order by records.known_at, actual_at, evidence_id, evidence_message
    ) as valid_to,
    order_loads.source_ingested_at
from records
left join order_loads on records.order_id = order_loads.order_id
