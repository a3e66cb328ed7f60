{{
    config(
        materialized='incremental',
        unique_key=['order_id', 'milestone'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}
-- One row per order x milestone (the catalogue in macros/marts.sql). Progress = the highest
-- milestone rank reached, never the latest event, so a late or stray scan cannot move an order
-- backwards. Shipment milestones roll up by the furthest-behind shipment: the order reached
-- `packed` only when every shipment did, at the time the last one did. Nothing here reads "now":
-- as-of columns live in order_state.
-- Incremental on INGESTION time, not vendor time: every order with a source row loaded after the
-- latest load already reflected here (source_ingested_at) is recomputed, all of its rows
-- replaced by delete+insert on (order_id, milestone). A ShipBob webhook retried a day late or a
-- late EasyPost scan carries an old vendor timestamp, but a new load time, so it is never skipped.

with

events as (
    select * from {{ ref('int_shipment_milestones_unioned') }}
),

promises as (
    select * from {{ ref('int_order_promises') }}
),

catalogue as (
    {{ milestone_catalogue_relation() }}
),

order_updates as (
    select
        order_id,
        max(source_updated_at) as source_updated_at,
        max(source_ingested_at) as source_ingested_at
    from events
    group by order_id
),

touched_orders as (
    select promises.order_id, order_updates.source_updated_at, order_updates.source_ingested_at
    from promises
    inner join order_updates on promises.order_id = order_updates.order_id
    {% if is_incremental() %}
    where order_updates.source_ingested_at > {{ ingestion_watermark('source_ingested_at') }}
    {% endif %}
),

-- int_shipment_milestones_unioned keeps every candidate that was decisive at some moment of
-- knowledge (the as-of layer needs them); with everything known, a shipment's milestone is its
-- earliest candidate (the latest one for in_transit, the latest in-transit scan)
touched_events as (
    select *
    from (
        select
            events.*,
            row_number() over (
                partition by events.order_id, events.shipment_id, events.milestone
                order by
                    case when events.milestone = 'in_transit' then events.actual_at end desc,
                    events.actual_at,
                    events.evidence_id,
                    events.evidence_message
            ) as candidate_rank
        from events
        inner join touched_orders on events.order_id = touched_orders.order_id
    ) as candidates
    where candidate_rank = 1
),

shipment_list as (
    select distinct order_id, shipment_id
    from touched_events
    where shipment_id is not null
),

shipment_counts as (
    select order_id, count(*) as shipment_count
    from shipment_list
    group by order_id
),

-- how far each shipment got: its highest progress rank with an observation
shipment_progress as (
    select
        shipment_list.order_id,
        shipment_list.shipment_id,
        coalesce(max(catalogue.milestone_rank), 0) as progress_rank
    from shipment_list
    left join touched_events
        on shipment_list.order_id = touched_events.order_id
        and shipment_list.shipment_id = touched_events.shipment_id
    left join catalogue
        on touched_events.milestone = catalogue.milestone
        and catalogue.milestone_kind = 'progress'
    group by shipment_list.order_id, shipment_list.shipment_id
),

order_shipment_progress as (
    select order_id, min(progress_rank) as shipment_progress_rank
    from shipment_progress
    group by order_id
),

order_grid as (
    select
        touched_orders.order_id,
        touched_orders.source_updated_at,
        touched_orders.source_ingested_at,
        coalesce(shipment_counts.shipment_count, 0) as shipment_count,
        coalesce(order_shipment_progress.shipment_progress_rank, 0) as shipment_progress_rank,
        catalogue.milestone,
        catalogue.milestone_rank,
        catalogue.milestone_kind,
        catalogue.milestone_scope,
        catalogue.expected_anchor,
        catalogue.expected_offset_hours
    from touched_orders
    cross join catalogue
    left join shipment_counts on touched_orders.order_id = shipment_counts.order_id
    left join order_shipment_progress
        on touched_orders.order_id = order_shipment_progress.order_id
),

-- shipments (per milestone) that have an observation, and the observation that decides the
-- order's time: the last shipment for progress milestones (furthest behind), the first
-- occurrence for exceptions and order-level milestones
ranked_events as (
    select
        touched_events.*,
        catalogue.milestone_kind,
        catalogue.milestone_scope,
        row_number() over (
            partition by touched_events.order_id, touched_events.milestone
            order by {{ decisive_milestone_order('touched_events') }}
        ) as decisive_rank
    from touched_events
    inner join catalogue on touched_events.milestone = catalogue.milestone
),

decisive_events as (
    select * from ranked_events where decisive_rank = 1
),

rolled_up as (
    select
        order_grid.*,
        decisive_events.actual_at as observed_at,
        decisive_events.source_system,
        decisive_events.evidence_id,
        decisive_events.evidence_message,
        decisive_events.detail,
        case
            when order_grid.milestone_kind = 'progress' and order_grid.milestone_scope = 'shipment'
                then order_grid.shipment_count > 0
                and order_grid.milestone_rank <= order_grid.shipment_progress_rank
            else decisive_events.actual_at is not null
        end as is_reached
    from order_grid
    left join decisive_events
        on order_grid.order_id = decisive_events.order_id
        and order_grid.milestone = decisive_events.milestone
),

with_expectations as (
    select
        rolled_up.*,
        case rolled_up.expected_anchor
            when 'placed_at'
                then {{ add_hours('promises.placed_at', 'rolled_up.expected_offset_hours') }}
            when 'promised_ship_by'
                then {{ add_hours('promises.promised_ship_by', 'rolled_up.expected_offset_hours') }}
            when 'promised_deliver_by'
                then {{ add_hours('promises.promised_deliver_by', 'rolled_up.expected_offset_hours') }}
        end as expected_at,
        -- an order reached a milestone when its last shipment did; not reached = no time
        case when rolled_up.is_reached then rolled_up.observed_at end as actual_at
    from rolled_up
    inner join promises on rolled_up.order_id = promises.order_id
),

final as (
    select
        cast(order_id as varchar) || ':' || milestone as order_milestone_id,
        order_id,
        milestone,
        milestone_rank,
        milestone_kind,
        expected_at,
        actual_at,
        is_reached,
        coalesce(actual_at > expected_at, false) as is_late,
        case
            when actual_at > expected_at then {{ hours_between('expected_at', 'actual_at') }}
            when actual_at is not null and expected_at is not null then 0.0
        end as hours_late,
        case when is_reached then source_system end as source_system,
        case when is_reached then evidence_id end as evidence_id,
        case
            when is_reached then coalesce(evidence_id || ': ' || evidence_message, 'implied by a later milestone')
        end as evidence,
        case when is_reached then detail end as detail,
        shipment_count,
        milestone_rank is not null
        and milestone_rank = max(case when is_reached then milestone_rank end)
            over (partition by order_id) as is_current,
        source_updated_at,
        source_ingested_at
    from with_expectations
)

select * from final
