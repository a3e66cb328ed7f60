{#- The as-of layer (docs/architecture.md "Time: event time, known time, and as of"): the state
    and rule flags of every order at every moment of a grid, in one query, reading only facts
    whose known_at <= the moment. marts.order_state_snapshots runs it over the snapshot grid
    (int_snapshot_grid); marts.order_state over the single moment "now" (var as_of), so the live
    table is the as-of layer at now by construction.
      grid_sql: a SELECT with one column `as_of` (timestamptz), any number of rows.
    Knowledge per source (the table in docs/architecture.md): a version of a record is what its
    vendor showed from its known_at (update time) until the next version's (valid_to); facts
    with their own time (placement, payment, cancellation, ShipBob states, scans) count from
    that time; an order's checkout fields (line items as ordered, shipping line, address, the
    promised date, total) from its placement. Before the first version of a record is valid,
    its state is unknown (null), never its current value. The customer tags on the order count
    from the version's ingested_at (Shopify sends them as they are when the order is read). -#}
{% macro order_state_as_of(grid_sql) -%}
with

grid as (
    select distinct cast(as_of as timestamptz) as as_of
    from ({{ grid_sql }}) as moments
    where as_of is not null
),

{{ as_of_inputs() }},

{{ promise_window_ctes('order_terms', 'promises', keys=['as_of']) }},

{{ as_of_milestones() }},

{{ as_of_parcels() }},

{{ as_of_rules() }},

{{ as_of_state() }},

{{ as_of_ml_features() }}

select * from ml_final
{%- endmacro %}


{#- The first moment an incremental run of order_state_snapshots recomputes: var
    snapshot_lookback_hours before "now" (the grid's last moment). -#}
{% macro snapshot_lookback_start() -%}
    (
        select {{ dbt.dateadd('hour', -1 * (var('snapshot_lookback_hours', 24) | int), 'max(as_of)') }}
        from {{ ref('int_snapshot_grid') }}
    )
{%- endmacro %}


{#- A version of alias valid at the moment as_of_expr (known by then, not yet superseded). -#}
{% macro valid_at(alias, as_of_expr) -%}
    ({{ alias }}.known_at <= {{ as_of_expr }}
    and ({{ alias }}.valid_to is null or {{ alias }}.valid_to > {{ as_of_expr }}))
{%- endmacro %}


{#- Orders, customers, routing and the promise as known at each moment. -#}
{% macro as_of_inputs() -%}
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" -%}
{{ promise_reference_ctes() }},

-- when each order's closure became known: cancelled, or every parcel terminal (delivered,
-- returned to sender, or cancelled at the 3PL while Shopify shows the order fulfilled; a split
-- order with one parcel delivered or returned and another still with the carrier is open), from
-- when the last parcel's terminal state became known. A parcel cancelled at the 3PL alone does
-- not close an order Shopify still shows unfulfilled or partial: its units are still owed
-- (a reship is a new shipment). Snapshots stop var snapshot_closed_retention_hours after it (the grid's
-- last moment, "now", keeps every order), so a closed order does not repeat its final state at
-- every moment. is_open (as_of_state) applies the same per-parcel rule at each moment.
shipment_terminal_events as (
    select order_id, shipment_id, known_at
    from {{ ref('int_shipment_milestones_unioned') }}
    where shipment_id is not null and milestone in ('delivered', 'return_to_sender')

    union all

    select cancels.order_id, cancels.shipment_id, greatest(cancels.known_at, fulfilled.known_at)
    from {{ ref('stg_wms__shipments') }} as cancels
    inner join (
        select order_id, min(known_at) as known_at
        from {{ ref('stg_storefront__orders') }}
        where fulfillment_status = 'fulfilled'
        group by order_id
    ) as fulfilled
        on cancels.order_id = fulfilled.order_id
    where cancels.status = 'Cancelled'
),

closures as (
    select order_id, min(closed_known_at) as closed_known_at
    from (
        select order_id, cancelled_at as closed_known_at
        from {{ ref('stg_storefront__orders') }}
        where is_latest_version and cancelled_at is not null

        union all

        select parcels.order_id, max(terminals.terminal_known_at)
        from (
            select distinct order_id, shipment_id
            from {{ ref('int_shipment_milestones_unioned') }}
            where shipment_id is not null
        ) as parcels
        left join (
            select shipment_id, min(known_at) as terminal_known_at
            from shipment_terminal_events
            group by shipment_id
        ) as terminals
            on parcels.shipment_id = terminals.shipment_id
        group by parcels.order_id
        having count(terminals.terminal_known_at) = count(*)

        union all

        -- a return to sender known only at the order level (a Loop return, no parcel named)
        -- closes an order of at most one parcel
        select returns_.order_id, min(returns_.known_at)
        from {{ ref('int_shipment_milestones_unioned') }} as returns_
        left join (
            select order_id, count(distinct shipment_id) as parcel_count
            from {{ ref('int_shipment_milestones_unioned') }}
            where shipment_id is not null
            group by order_id
        ) as order_parcels
            on returns_.order_id = order_parcels.order_id
        where returns_.milestone = 'return_to_sender' and returns_.shipment_id is null
            and coalesce(order_parcels.parcel_count, 0) <= 1
        group by returns_.order_id
    ) as closed
    group by order_id
),

last_moment as (
    select max(as_of) as as_of from grid
),

-- the customer's tags on an order payload are those of when the order was read, and a tag
-- change does not move the order's updated_at: a version's tags count from its ingested_at
-- (read <= ingest), until a newer version (vendor order, as staging ranks) has been ingested
order_tag_versions as (
    select
        order_id,
        customer_tags,
        ingested_at as tags_known_at,
        min(ingested_at) over (
            partition by order_id order by version_number
            rows between 1 following and unbounded following
        ) as tags_valid_to
    from {{ ref('stg_storefront__orders') }}
    where order_id is not null
),

-- an order exists from its placement. Its checkout fields (shipping line, address, the
-- promised date, total; line items in ml_items) are those of the version valid at the moment,
-- and before its first version is known (a backfilled single version newer than the moment)
-- those of its first version, as if set at checkout (placed_at): an edit before that version
-- shows (a known leak, docs/architecture.md "Known leaks"). The customer's tags are
-- not: they come from order_tag_versions, unknown (null: the tier falls back to standard,
-- macro order_terms_select) before any version has been read. Payment and cancellation carry
-- their own times (processed_at, cancelled_at), so the latest version's count from those times.
orders as (
    select
        grid.as_of,
        latest.order_id,
        latest.order_name,
        known.customer_id,
        tags.customer_tags,
        latest.placed_at,
        case when latest.payment_captured_at <= grid.as_of then latest.payment_captured_at end
            as payment_captured_at,
        coalesce(latest.cancelled_at <= grid.as_of, false) as is_cancelled,
        case when latest.cancelled_at <= grid.as_of then latest.cancelled_at end as cancelled_at,
        known.total_price,
        known.currency,
        known.service_code,
        known.destination_province_code,
        known.destination_country_code,
        known.promised_delivery_date,
        -- which version's checkout fields these are (ml_items reads its lines)
        known.version_number as known_version_number,
        known.known_at <= grid.as_of as is_version_known,
        -- Shopify shows every unit fulfilled (a state field: only once that version is known)
        coalesce(known.known_at <= grid.as_of and known.fulfillment_status = 'fulfilled', false)
            as is_fulfilled
    from {{ ref('stg_storefront__orders') }} as latest
    inner join grid on latest.placed_at <= grid.as_of
    inner join {{ ref('stg_storefront__orders') }} as known
        on latest.order_id = known.order_id
        and (
            {{ valid_at('known', 'grid.as_of') }}
            or (known.version_number = 1 and known.known_at > grid.as_of)
        )
    left join order_tag_versions as tags
        on latest.order_id = tags.order_id
        and tags.tags_known_at <= grid.as_of
        and (tags.tags_valid_to is null or tags.tags_valid_to > grid.as_of)
    cross join last_moment
    left join closures on latest.order_id = closures.order_id
    where latest.is_latest_version and latest.order_id is not null
        and (
            grid.as_of = last_moment.as_of
            or closures.closed_known_at is null
            or grid.as_of <= {{ add_hours('closures.closed_known_at', var('snapshot_closed_retention_hours', 24)) }}
        )
),

customers as (
    select grid.as_of, versions.customer_id, versions.customer_tier
    from {{ ref('stg_storefront__customers') }} as versions
    inner join grid on {{ valid_at('versions', 'grid.as_of') }}
),

-- routing: the FulfillmentOrder version valid then; before its first version is known, the
-- location it was created at (its own created_at), with its holds and status unknown
fulfillment_orders as (
    select
        grid.as_of, versions.fulfillment_order_id, versions.order_id, versions.warehouse_name,
        versions.created_at, versions.status, versions.hold_reason, versions.hold_reason_category
    from {{ ref('stg_oms__fulfillment_orders') }} as versions
    inner join grid on {{ valid_at('versions', 'grid.as_of') }}

    union all

    select
        grid.as_of, versions.fulfillment_order_id, versions.order_id, versions.warehouse_name,
        versions.created_at, cast(null as varchar), cast(null as varchar), cast(null as varchar)
    from {{ ref('stg_oms__fulfillment_orders') }} as versions
    inner join grid
        on versions.version_number = 1
        and versions.created_at <= grid.as_of
        and versions.known_at > grid.as_of
),

first_fulfillment_orders as (
    select as_of, order_id, warehouse_name
    from (
        select
            as_of,
            order_id,
            warehouse_name,
            row_number() over (
                partition by as_of, order_id order by created_at, fulfillment_order_id
            ) as routing_rank
        from fulfillment_orders
    ) as ranked
    where routing_rank = 1
),

order_terms as (
{{ order_terms_select(keys=['as_of']) }}
)
{%- endmacro %}


{#- Milestones as known at each moment: the same roll-up as fct_order_milestones, over the
    candidates of int_shipment_milestones_unioned known by then. -#}
{% macro as_of_milestones() -%}
catalogue as (
    {{ milestone_catalogue_relation() }}
),

-- per moment x shipment x milestone: the decisive candidate known then (earliest; latest for
-- in_transit): int_shipment_milestones_unioned gives each candidate the interval in which it
-- was the decisive one
observed as (
    select
        orders.as_of,
        candidates.order_id,
        candidates.shipment_id,
        candidates.milestone,
        candidates.actual_at,
        candidates.evidence_id,
        candidates.evidence_message,
        candidates.detail
    from {{ ref('int_shipment_milestones_unioned') }} as candidates
    inner join orders
        on candidates.order_id = orders.order_id
        and {{ valid_at('candidates', 'orders.as_of') }}
),

shipment_progress as (
    select
        observed.as_of,
        observed.order_id,
        observed.shipment_id,
        coalesce(max(catalogue.milestone_rank), 0) as progress_rank
    from observed
    left join catalogue
        on observed.milestone = catalogue.milestone and catalogue.milestone_kind = 'progress'
    where observed.shipment_id is not null
    group by observed.as_of, observed.order_id, observed.shipment_id
),

order_shipments as (
    select as_of, order_id, count(*) as shipment_count, min(progress_rank) as shipment_progress_rank
    from shipment_progress
    group by as_of, order_id
),

-- per moment x order x milestone: the observation that decides the order's time (the last
-- shipment for shipment progress milestones, the first occurrence otherwise)
decisive as (
    select *
    from (
        select
            observed.*,
            catalogue.milestone_rank,
            catalogue.milestone_kind,
            catalogue.milestone_scope,
            row_number() over (
                partition by observed.as_of, observed.order_id, observed.milestone
                order by {{ decisive_milestone_order('observed') }}
            ) as decisive_rank
        from observed
        inner join catalogue on observed.milestone = catalogue.milestone
    ) as ranked
    where decisive_rank = 1
),

reached_milestones as (
    select
        decisive.*,
        case
            when decisive.milestone_kind = 'progress' and decisive.milestone_scope = 'shipment'
                then coalesce(order_shipments.shipment_count, 0) > 0
                and decisive.milestone_rank <= order_shipments.shipment_progress_rank
            else true
        end as is_reached
    from decisive
    left join order_shipments
        on decisive.as_of = order_shipments.as_of and decisive.order_id = order_shipments.order_id
),

-- the furthest progress rank: order milestones observed, shipment milestones by the
-- furthest-behind shipment (implied ranks count: a later milestone implies the earlier ones)
current_ranks as (
    select
        orders.as_of,
        orders.order_id,
        coalesce(order_shipments.shipment_count, 0) as shipment_count,
        greatest(
            coalesce(max(case
                when reached_milestones.milestone_scope = 'order'
                    and reached_milestones.milestone_kind = 'progress'
                    then reached_milestones.milestone_rank
            end), 0),
            case
                when coalesce(order_shipments.shipment_count, 0) > 0
                    then order_shipments.shipment_progress_rank
                else 0
            end
        ) as current_rank
    from orders
    left join order_shipments
        on orders.as_of = order_shipments.as_of and orders.order_id = order_shipments.order_id
    left join reached_milestones
        on orders.as_of = reached_milestones.as_of and orders.order_id = reached_milestones.order_id
    group by orders.as_of, orders.order_id, order_shipments.shipment_count,
        order_shipments.shipment_progress_rank
),

current_progress as (
    select
        current_ranks.as_of,
        current_ranks.order_id,
        current_ranks.shipment_count,
        current_ranks.current_rank,
        catalogue.milestone as progress_milestone,
        reached_milestones.actual_at as progress_at
    from current_ranks
    left join catalogue
        on catalogue.milestone_rank = current_ranks.current_rank
    left join reached_milestones
        on current_ranks.as_of = reached_milestones.as_of
        and current_ranks.order_id = reached_milestones.order_id
        and reached_milestones.milestone = catalogue.milestone
        and reached_milestones.is_reached
),

-- the most recent observation by its own time, progress below the current milestone excluded
-- (a stray in-transit scan after delivery is not the order's last event)
last_events as (
    select *
    from (
        select
            reached_milestones.as_of,
            reached_milestones.order_id,
            reached_milestones.milestone,
            reached_milestones.actual_at,
            reached_milestones.evidence_id || ': ' || reached_milestones.evidence_message as evidence,
            row_number() over (
                partition by reached_milestones.as_of, reached_milestones.order_id
                order by
                    reached_milestones.actual_at desc,
                    reached_milestones.milestone_rank desc nulls last,
                    reached_milestones.milestone
            ) as event_rank
        from reached_milestones
        inner join current_progress
            on reached_milestones.as_of = current_progress.as_of
            and reached_milestones.order_id = current_progress.order_id
        where reached_milestones.is_reached
            and (
                reached_milestones.milestone_rank is null
                or reached_milestones.milestone_rank >= current_progress.current_rank
                or reached_milestones.actual_at <= current_progress.progress_at
            )
    ) as ranked
    where event_rank = 1
),

reached as (
    select
        as_of,
        order_id,
        max(case when milestone = 'delivered' and is_reached then actual_at end) as delivered_at,
        max(case when milestone = 'carrier_accepted' and is_reached then actual_at end)
            as carrier_accepted_at,
        bool_or(milestone = 'delivered' and is_reached) as is_delivered,
        bool_or(milestone = 'return_to_sender' and is_reached) as is_returned_to_sender,
        min(case when milestone = 'return_to_sender' then actual_at end) as returned_at
    from reached_milestones
    group by as_of, order_id
),

first_holds as (
    select *
    from (
        select
            as_of,
            order_id,
            actual_at,
            detail as hold_category,
            row_number() over (
                partition by as_of, order_id order by actual_at, detail
            ) as hold_rank
        from observed
        where milestone = 'fulfillment_hold'
    ) as ranked
    where hold_rank = 1
)
{%- endmacro %}


{#- Parcels (ShipBob shipments) as known at each moment: the 3PL's state valid then, the
    warehouse steps and carrier scans known then, the tracker version valid then. -#}
{% macro as_of_parcels() -%}
shipments as (
    select orders.as_of, versions.*
    from {{ ref('stg_wms__shipments') }} as versions
    inner join orders
        on versions.order_id = orders.order_id
        and {{ valid_at('versions', 'orders.as_of') }}
),

steps as (
    select
        as_of,
        shipment_id,
        min(case when milestone = 'label_created' then actual_at end) as label_created_at,
        min(case when milestone = 'carrier_accepted' then actual_at end) as accepted_at,
        min(case when milestone = 'delivered' then actual_at end) as delivered_at,
        min(case when milestone = 'return_to_sender' then actual_at end) as returned_at
    from observed
    where shipment_id is not null
    group by as_of, shipment_id
),

-- scans known at each moment, for the parcels of that moment
known_events as (
    select shipments.as_of, shipments.shipment_id, events.*
    from shipments
    inner join {{ ref('stg_carrier__tracking_events') }} as events
        on events.tracking_number = shipments.tracking_number
        and events.known_at <= shipments.as_of
),

physical_scans as (
    select as_of, shipment_id, max(event_at) as last_scan_at
    from known_events
    where canonical_status not in ('pre_transit', 'unknown', 'cancelled')
    group by as_of, shipment_id
),

-- the latest event by scan time (not by arrival): what the carrier says then
latest_event as (
    select *
    from (
        select
            known_events.*,
            row_number() over (
                partition by as_of, shipment_id order by event_at desc, event_id desc
            ) as event_rank
        from known_events
    ) as ranked
    where event_rank = 1
),

-- a tracking number can have several trackers: the newest version valid then
tracker_latest as (
    select *
    from (
        select
            shipments.as_of,
            shipments.shipment_id,
            trackers.tracker_id,
            trackers.carrier,
            trackers.canonical_status,
            trackers.est_delivery_date,
            trackers.known_at,
            row_number() over (
                partition by shipments.as_of, shipments.shipment_id
                order by trackers.updated_at desc, trackers.tracker_id desc
            ) as tracker_rank
        from shipments
        inner join {{ ref('stg_carrier__trackers') }} as trackers
            on trackers.tracking_number = shipments.tracking_number
            and {{ valid_at('trackers', 'shipments.as_of') }}
    ) as ranked
    where tracker_rank = 1
),

parcels as (
    select
        shipments.as_of,
        shipments.order_id,
        shipments.shipment_id,
        shipments.tracking_number,
        shipments.warehouse_name,
        coalesce(tracker_latest.carrier, shipments.carrier) as carrier,
        shipments.status as wms_status,
        shipments.status_detail as wms_status_detail,
        shipments.estimated_fulfillment_date_status as fulfillment_date_status,
        shipments.last_update_at as wms_updated_at,
        steps.label_created_at,
        coalesce(shipments.actual_fulfillment_date, steps.accepted_at) as shipped_at,
        steps.accepted_at,
        physical_scans.last_scan_at,
        latest_event.event_at as last_event_at,
        latest_event.canonical_status as last_event_status,
        latest_event.status_detail as last_event_status_detail,
        tracker_latest.canonical_status as tracker_status,
        tracker_latest.est_delivery_date,
        tracker_latest.known_at as tracker_known_at,
        steps.delivered_at,
        steps.returned_at,
        -- terminal: the carrier's part is over, so silence is not a gap
        steps.delivered_at is not null
        or steps.returned_at is not null
        or coalesce(tracker_latest.canonical_status, '') in ('delivered', 'return_to_sender', 'cancelled')
            as is_carrier_terminal
    from shipments
    left join steps
        on shipments.as_of = steps.as_of and shipments.shipment_id = steps.shipment_id
    left join tracker_latest
        on shipments.as_of = tracker_latest.as_of and shipments.shipment_id = tracker_latest.shipment_id
    left join physical_scans
        on shipments.as_of = physical_scans.as_of and shipments.shipment_id = physical_scans.shipment_id
    left join latest_event
        on shipments.as_of = latest_event.as_of and shipments.shipment_id = latest_event.shipment_id
),

-- per moment x order: whether every parcel known then is terminal (delivered, returned to
-- sender, or cancelled at the 3PL in the ShipBob version valid then while the Shopify version
-- valid then shows the order fulfilled): the order is open until then (the same rule as
-- `closures`)
parcel_terminals as (
    select
        known_parcels.as_of,
        known_parcels.order_id,
        bool_and(
            known_parcels.is_terminal_milestone
            or coalesce(shipments.status = 'Cancelled' and orders.is_fulfilled, false)
        ) as is_every_parcel_terminal
    from (
        select
            as_of,
            order_id,
            shipment_id,
            bool_or(milestone in ('delivered', 'return_to_sender')) as is_terminal_milestone
        from observed
        where shipment_id is not null
        group by as_of, order_id, shipment_id
    ) as known_parcels
    left join shipments
        on known_parcels.as_of = shipments.as_of
        and known_parcels.shipment_id = shipments.shipment_id
    left join orders
        on known_parcels.as_of = orders.as_of and known_parcels.order_id = orders.order_id
    group by known_parcels.as_of, known_parcels.order_id
)
{%- endmacro %}


{#- The detection rules at each moment (rules and thresholds: the order_state
    section of models/marts/_marts__models.yml). -#}
{% macro as_of_rules() -%}
{%- set shop_tz = var('shop_time_zone') -%}
-- the first ShipBob version known by the moment that reported each shipment late: the time the
-- 3PL first said so, not the update time of the version valid now
late_reports as (
    select orders.as_of, versions.order_id, min(versions.known_at) as reported_late_at
    from {{ ref('stg_wms__shipments') }} as versions
    inner join orders
        on versions.order_id = orders.order_id
        and versions.known_at <= orders.as_of
    where versions.estimated_fulfillment_date_status in ('PendingLate', 'FulfilledLate')
    group by orders.as_of, versions.order_id
),

-- ship-late: every shipment shipped (the furthest-behind one decides) by ship-by + grace, or
-- the 3PL itself reports the shipment late (ShipBob estimated_fulfillment_date_status
-- PendingLate / FulfilledLate): the earliest warning of a warehouse backlog.
shipping as (
    select
        as_of,
        order_id,
        count(*) as shipment_count,
        count(shipped_at) as shipped_count,
        max(shipped_at) as last_shipped_at,
        bool_or(fulfillment_date_status = 'PendingLate' and shipped_at is null)
            as is_pending_late
    from parcels
    group by as_of, order_id
),

base as (
    select
        promises.as_of,
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
        late_reports.reported_late_at,
        coalesce(shipping.is_pending_late, false) as is_pending_late
    from promises
    inner join orders on promises.as_of = orders.as_of and promises.order_id = orders.order_id
    left join shipping on promises.as_of = shipping.as_of and promises.order_id = shipping.order_id
    left join late_reports
        on promises.as_of = late_reports.as_of and promises.order_id = late_reports.order_id
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
        as_of,
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

-- no-first-scan: label created, no carrier acceptance within N business hours of the shop
-- calendar: the deadline is where the business-hour clock reaches the label's clock + N (a
-- label made on a weekend starts counting at the next business day's midnight; a remainder
-- never lands on a weekend or holiday).
labels as (
    select
        parcels.as_of,
        parcels.order_id,
        parcels.shipment_id,
        parcels.accepted_at,
        parcels.is_carrier_terminal,
        {{ business_clock('parcels.label_created_at', 'label_day') }}
        + {{ var('no_first_scan_business_hours') }} as deadline_clock
    from parcels
    inner join calendar as label_day
        on {{ shop_local_date('parcels.label_created_at') }} = label_day.calendar_date
    where parcels.label_created_at is not null
),

label_deadlines as (
    select
        labels.as_of,
        labels.order_id,
        labels.shipment_id,
        labels.accepted_at,
        labels.is_carrier_terminal,
        {{ business_clock_instant('labels.deadline_clock', 'deadline_day') }} as scan_deadline
    from labels
    inner join calendar as deadline_day
        on deadline_day.is_business_day
        and deadline_day.business_day_index = cast(floor(labels.deadline_clock / 24.0) as integer) + 1
),

no_first_scan as (
    select
        as_of,
        order_id,
        bool_or(
            accepted_at > scan_deadline or (accepted_at is null and as_of > scan_deadline)
        ) as no_first_scan_occurred,
        bool_or(
            accepted_at is null and not is_carrier_terminal and as_of > scan_deadline
        ) as no_first_scan_active,
        min(
            case
                when accepted_at > scan_deadline or (accepted_at is null and as_of > scan_deadline)
                    then scan_deadline
            end
        ) as no_first_scan_detected_at
    from label_deadlines
    group by as_of, order_id
),

-- scan gaps (carrier hours: Monday to Saturday except holidays) between the physical scans known at the moment, up to the first
-- delivery known then; the lane's threshold is the one of the day the gap started
-- (int_lane_scan_gaps_aggregated: from gaps known strictly before that day)
delivered_scans as (
    select as_of, shipment_id, min(event_at) as delivered_at
    from known_events
    where canonical_status = 'delivered'
    group by as_of, shipment_id
),

scan_times as (
    select distinct known_events.as_of, known_events.shipment_id, known_events.event_at
    from known_events
    left join delivered_scans
        on known_events.as_of = delivered_scans.as_of
        and known_events.shipment_id = delivered_scans.shipment_id
    where known_events.canonical_status not in ('pre_transit', 'unknown', 'cancelled')
        and (delivered_scans.delivered_at is null or known_events.event_at <= delivered_scans.delivered_at)
),

parcel_lanes as (
    select
        parcels.as_of,
        parcels.order_id,
        parcels.shipment_id,
        parcels.last_scan_at,
        parcels.is_carrier_terminal,
        coalesce(parcels.warehouse_name, promises.warehouse_name, 'unknown')
        || ' -> ' || coalesce(promises.destination_region, 'unknown') as lane
    from parcels
    inner join promises on parcels.as_of = promises.as_of and parcels.order_id = promises.order_id
),

gaps as (
    select
        scan_times.as_of,
        scan_times.shipment_id,
        lag(scan_times.event_at) over (
            partition by scan_times.as_of, scan_times.shipment_id order by scan_times.event_at
        ) as previous_scan_at,
        scan_times.event_at as scan_at
    from scan_times
),

lane_thresholds as (
    select * from {{ ref('int_lane_scan_gaps_aggregated') }}
),

closed_gap_checks as (
    select
        gaps.as_of,
        parcel_lanes.order_id,
        {{ hours_between('gaps.previous_scan_at', 'gaps.scan_at') }} as gap_hours,
        {{ carrier_clock('gaps.scan_at', 'scan_day') }}
        - {{ carrier_clock('gaps.previous_scan_at', 'previous_day') }} as gap_business_hours,
        gaps.previous_scan_at,
        {{ carrier_clock('gaps.previous_scan_at', 'previous_day') }} as previous_scan_business_clock,
        coalesce(thresholds.threshold_hours, overall.threshold_hours, {{ var('scan_gap_floor_hours') }})
            as threshold_hours
    from gaps
    inner join parcel_lanes
        on gaps.as_of = parcel_lanes.as_of and gaps.shipment_id = parcel_lanes.shipment_id
    inner join calendar as previous_day
        on {{ shop_local_date('gaps.previous_scan_at') }} = previous_day.calendar_date
    inner join calendar as scan_day
        on {{ shop_local_date('gaps.scan_at') }} = scan_day.calendar_date
    left join lane_thresholds as thresholds
        on thresholds.lane = parcel_lanes.lane
        and thresholds.threshold_date = previous_day.calendar_date
    left join lane_thresholds as overall
        on overall.lane = '*' and overall.threshold_date = previous_day.calendar_date
    where gaps.previous_scan_at is not null
),

closed_gap_breaches as (
    select
        closed_gap_checks.*,
        previous_scan_business_clock + threshold_hours as breach_clock
    from closed_gap_checks
),

closed_gaps as (
{{ gap_breach_rollup(
    'closed_gap_breaches', 'gap_business_hours', 'closed_gap_breaches.gap_hours',
    'closed_gap_breaches.previous_scan_at', 'max_closed_gap_hours', 'first_gap_breach_at',
    'first_lost_breach_at'
) }}
),

-- the threshold that applies to each parcel now: the one of the day of its last scan (of the
-- moment itself before any scan)
parcel_thresholds as (
    select
        parcel_lanes.*,
        coalesce(thresholds.threshold_hours, overall.threshold_hours, {{ var('scan_gap_floor_hours') }})
            as threshold_hours
    from parcel_lanes
    left join lane_thresholds as thresholds
        on thresholds.lane = parcel_lanes.lane
        and thresholds.threshold_date
        = {{ shop_local_date('coalesce(parcel_lanes.last_scan_at, parcel_lanes.as_of)') }}
    left join lane_thresholds as overall
        on overall.lane = '*'
        and overall.threshold_date
        = {{ shop_local_date('coalesce(parcel_lanes.last_scan_at, parcel_lanes.as_of)') }}
),

order_thresholds as (
    select as_of, order_id, max(threshold_hours) as scan_gap_threshold_hours
    from parcel_thresholds
    group by as_of, order_id
),

-- silence since the last scan of a parcel still with the carrier, in carrier hours
open_gap_checks as (
    select
        parcel_thresholds.as_of,
        parcel_thresholds.order_id,
        parcel_thresholds.last_scan_at,
        parcel_thresholds.threshold_hours,
        {{ carrier_clock('parcel_thresholds.as_of', 'as_of_day') }}
        - {{ carrier_clock('parcel_thresholds.last_scan_at', 'last_day') }} as open_business_hours,
        {{ carrier_clock('parcel_thresholds.last_scan_at', 'last_day') }}
        + parcel_thresholds.threshold_hours as breach_clock
    from parcel_thresholds
    inner join calendar as last_day
        on {{ shop_local_date('parcel_thresholds.last_scan_at') }} = last_day.calendar_date
    inner join calendar as as_of_day
        on {{ shop_local_date('parcel_thresholds.as_of') }} = as_of_day.calendar_date
    where parcel_thresholds.last_scan_at is not null
        and not parcel_thresholds.is_carrier_terminal
),

open_gaps as (
{{ gap_breach_rollup(
    'open_gap_checks', 'open_business_hours',
    hours_between('open_gap_checks.last_scan_at', 'open_gap_checks.as_of'),
    'open_gap_checks.last_scan_at', 'open_gap_hours', 'open_gap_breach_at', 'open_lost_breach_at'
) }}
),

-- carrier exceptions: canonical exception statuses, or a delay / exception detail on a scan.
-- available_for_pickup counts: every order here ships to an address, so a parcel left at a
-- pickup point is a failed home delivery (USPS "notice left").
exception_events as (
    select
        parcels.as_of,
        parcels.order_id,
        parcels.shipment_id,
        known_events.event_at,
        case
            when known_events.canonical_status in
                ('delivery_failed', 'address_issue', 'return_to_sender', 'lost',
                 'available_for_pickup')
                then known_events.canonical_status
            else lower(known_events.status_detail)
        end as exception_reason
    from known_events
    inner join parcels
        on known_events.as_of = parcels.as_of and known_events.shipment_id = parcels.shipment_id
    where known_events.canonical_status in
        ('delivery_failed', 'address_issue', 'return_to_sender', 'lost', 'available_for_pickup')
        or lower(coalesce(known_events.status_detail, '')) in (
            'weather_delay', 'delayed', 'transit_exception', 'delivery_exception', 'damaged',
            'missorted', 'refused', 'address_correction', 'failure', 'held'
        )
        -- vendor failure statuses; EasyPost `error` is a tracking-system error (canonical
        -- unknown), not a parcel problem
        or lower(coalesce(known_events.status, '')) in ('failure', 'exception', 'attemptfail')
),

first_exceptions as (
    select *
    from (
        select
            exception_events.*,
            row_number() over (
                partition by as_of, order_id order by event_at, exception_reason
            ) as exception_rank
        from exception_events
    ) as ranked
    where exception_rank = 1
),

-- an exception stays active while its parcel is with the carrier (a delayed parcel keeps
-- moving, late), until delivery or return, or until a tracker version known after it
-- estimates delivery within the promise again
parcel_exceptions as (
    select as_of, shipment_id, min(event_at) as first_exception_at
    from exception_events
    group by as_of, shipment_id
),

active_exceptions as (
    select parcels.as_of, parcels.order_id, count(*) as active_parcels
    from parcels
    inner join parcel_exceptions
        on parcels.as_of = parcel_exceptions.as_of
        and parcels.shipment_id = parcel_exceptions.shipment_id
    inner join promises on parcels.as_of = promises.as_of and parcels.order_id = promises.order_id
    where not parcels.is_carrier_terminal
        and not coalesce(
            parcels.tracker_known_at > parcel_exceptions.first_exception_at
            -- by days, as the customer is told them (a date-only estimate is no instant)
            and {{ estimate_day('parcels.est_delivery_date', 'promises.destination_time_zone') }}
                <= promises.promised_delivery_date,
            false
        )
    group by parcels.as_of, parcels.order_id
),

carrier_exception as (
    select
        base.as_of,
        base.order_id,
        first_exceptions.order_id is not null or reached.returned_at is not null
            as carrier_exception_occurred,
        coalesce(active_exceptions.active_parcels, 0) > 0 as carrier_exception_active,
        case
            when first_exceptions.event_at is null then reached.returned_at
            when reached.returned_at is null then first_exceptions.event_at
            when first_exceptions.event_at < reached.returned_at then first_exceptions.event_at
            else reached.returned_at
        end as carrier_exception_detected_at,
        coalesce(first_exceptions.exception_reason,
            case when reached.returned_at is not null then 'return_to_sender' end)
            as carrier_exception_reason
    from base
    left join first_exceptions
        on base.as_of = first_exceptions.as_of and base.order_id = first_exceptions.order_id
    left join active_exceptions
        on base.as_of = active_exceptions.as_of and base.order_id = active_exceptions.order_id
    left join reached on base.as_of = reached.as_of and base.order_id = reached.order_id
),

-- an explicit lost scan: lost from its time, active while the parcel is still not found
lost_scans as (
    select as_of, order_id, min(event_at) as lost_scan_at
    from exception_events
    where exception_reason = 'lost'
    group by as_of, order_id
),

lost_parcels as (
    select as_of, order_id, count(*) as lost_parcels
    from parcels
    where last_event_status = 'lost' and not is_carrier_terminal
    group by as_of, order_id
),

-- fulfillment holds: the OMS holds and the 3PL's holds valid at the moment
current_holds as (
    select as_of, order_id, min(hold_reason_category) as hold_category
    from fulfillment_orders
    where hold_reason is not null and status not in ('closed', 'cancelled')
    group by as_of, order_id
),

current_wms_holds as (
    select as_of, order_id, count(*) as held_shipments
    from parcels
    where lower(coalesce(wms_status, '')) in ('onhold', 'exception') and shipped_at is null
    group by as_of, order_id
),

fulfillment_hold as (
    select
        base.as_of,
        base.order_id,
        first_holds.order_id is not null as fulfillment_hold_occurred,
        not base.is_cancelled and base.shipped_at is null
        and (current_holds.order_id is not null or current_wms_holds.order_id is not null)
            as fulfillment_hold_active,
        first_holds.actual_at as fulfillment_hold_detected_at,
        coalesce(current_holds.hold_category, first_holds.hold_category) as fulfillment_hold_category
    from base
    left join first_holds on base.as_of = first_holds.as_of and base.order_id = first_holds.order_id
    left join current_holds
        on base.as_of = current_holds.as_of and base.order_id = current_holds.order_id
    left join current_wms_holds
        on base.as_of = current_wms_holds.as_of and base.order_id = current_wms_holds.order_id
),

delivery as (
    select
        as_of,
        order_id,
        case when count(delivered_at) = count(*) then max(delivered_at) end as delivered_at
    from parcels
    group by as_of, order_id
),

flags as (
    select
        base.as_of,
        base.order_id,
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
        carrier_exception.carrier_exception_occurred,
        carrier_exception.carrier_exception_active,
        carrier_exception.carrier_exception_detected_at,
        carrier_exception.carrier_exception_reason,
        fulfillment_hold.fulfillment_hold_occurred,
        fulfillment_hold.fulfillment_hold_active,
        fulfillment_hold.fulfillment_hold_detected_at,
        fulfillment_hold.fulfillment_hold_category,
        coalesce(closed_gaps.first_lost_breach_at, open_gaps.open_lost_breach_at, lost_scans.lost_scan_at)
            is not null as lost_occurred,
        open_gaps.open_lost_breach_at is not null or lost_parcels.order_id is not null as lost_active,
        {{ earliest_of([
            'closed_gaps.first_lost_breach_at', 'open_gaps.open_lost_breach_at', 'lost_scans.lost_scan_at'
        ]) }} as lost_detected_at,
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
    inner join ship_late on base.as_of = ship_late.as_of and base.order_id = ship_late.order_id
    inner join carrier_exception
        on base.as_of = carrier_exception.as_of and base.order_id = carrier_exception.order_id
    inner join fulfillment_hold
        on base.as_of = fulfillment_hold.as_of and base.order_id = fulfillment_hold.order_id
    left join no_first_scan
        on base.as_of = no_first_scan.as_of and base.order_id = no_first_scan.order_id
    left join closed_gaps on base.as_of = closed_gaps.as_of and base.order_id = closed_gaps.order_id
    left join open_gaps on base.as_of = open_gaps.as_of and base.order_id = open_gaps.order_id
    left join order_thresholds
        on base.as_of = order_thresholds.as_of and base.order_id = order_thresholds.order_id
    left join delivery on base.as_of = delivery.as_of and base.order_id = delivery.order_id
    left join lost_scans on base.as_of = lost_scans.as_of and base.order_id = lost_scans.order_id
    left join lost_parcels on base.as_of = lost_parcels.as_of and base.order_id = lost_parcels.order_id
)
{%- endmacro %}


{#- order_state's columns at each moment (column meanings: models/marts/_marts__models.yml). -#}
{% macro as_of_state() -%}
parcel_rollup as (
    select
        as_of,
        order_id,
        -- the furthest-behind parcel still with the carrier (a stalled parcel of a split order
        -- is not hidden by its moving sibling), else the latest scan of all
        coalesce(
            min(case when not is_carrier_terminal then last_scan_at end), max(last_scan_at)
        ) as last_scan_at,
        min(carrier) as carrier,
        min(warehouse_name) as warehouse_name,
        count(distinct carrier) as carrier_count,
        case when count(shipped_at) = count(*) then max(shipped_at) end as shipped_at
    from parcels
    group by as_of, order_id
),

-- WISMO tickets: the ticket versions valid at the moment that carry the wismo tag
wismo as (
    select orders.as_of, orders.order_id, count(distinct tickets.ticket_id) as wismo_ticket_count
    from {{ ref('stg_support__tickets') }} as tickets
    inner join orders
        on tickets.order_name = orders.order_name
        and {{ valid_at('tickets', 'orders.as_of') }}
    where tickets.is_wismo
    group by orders.as_of, orders.order_id
),

joined as (
    select
        orders.as_of,
        orders.order_id,
        orders.order_name,
        orders.placed_at,
        orders.is_cancelled,
        case
            when orders.is_cancelled then 'cancelled'
            when reached.is_returned_to_sender and not coalesce(reached.is_delivered, false)
                then 'return_to_sender'
            else coalesce(current_progress.progress_milestone, 'order_placed')
        end as current_milestone,
        last_events.milestone as last_event,
        last_events.actual_at as last_event_at,
        last_events.evidence as last_event_evidence,
        parcel_rollup.last_scan_at,
        {{ hours_between('parcel_rollup.last_scan_at', 'orders.as_of') }} as hours_since_last_scan,
        promises.promised_ship_by,
        promises.promised_deliver_by,
        promises.promised_delivery_date,
        promises.destination_time_zone,
        promises.promise_source,
        parcel_rollup.shipped_at,
        reached.delivered_at,
        {{ hours_between('coalesce(parcel_rollup.shipped_at, orders.as_of)', 'promises.promised_ship_by') }}
            as ship_slack_hours,
        {{ hours_between('coalesce(reached.delivered_at, orders.as_of)', 'promises.promised_deliver_by') }}
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
        and not coalesce(parcel_terminals.is_every_parcel_terminal, false)
        -- a return known only at the order level (Loop) closes an order of at most one parcel
        and not (
            coalesce(reached.is_returned_to_sender, false)
            and coalesce(current_progress.shipment_count, 0) <= 1
        ) as is_open,
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
    inner join promises on orders.as_of = promises.as_of and orders.order_id = promises.order_id
    inner join flags on orders.as_of = flags.as_of and orders.order_id = flags.order_id
    left join current_progress
        on orders.as_of = current_progress.as_of and orders.order_id = current_progress.order_id
    left join last_events
        on orders.as_of = last_events.as_of and orders.order_id = last_events.order_id
    left join reached on orders.as_of = reached.as_of and orders.order_id = reached.order_id
    left join parcel_rollup
        on orders.as_of = parcel_rollup.as_of and orders.order_id = parcel_rollup.order_id
    left join wismo on orders.as_of = wismo.as_of and orders.order_id = wismo.order_id
    left join parcel_terminals
        on orders.as_of = parcel_terminals.as_of and orders.order_id = parcel_terminals.order_id
),

final as (
    select
        joined.order_id,
        joined.order_name,
        joined.placed_at,
        joined.current_milestone,
        joined.last_event,
        joined.last_event_at,
        joined.last_event_evidence,
        joined.last_scan_at,
        joined.hours_since_last_scan,
        joined.promised_ship_by,
        joined.promised_deliver_by,
        joined.promised_delivery_date,
        joined.destination_time_zone,
        joined.promise_source,
        joined.shipped_at,
        joined.delivered_at,
        joined.ship_slack_hours,
        joined.deliver_slack_hours,
        joined.customer_tier,
        joined.order_value,
        joined.currency,
        joined.carrier,
        joined.service_code,
        joined.warehouse_name,
        joined.destination_region,
        joined.lane,
        joined.shipment_count,
        joined.wismo_ticket_count,
        joined.is_cancelled,
        joined.is_open,
        joined.promise_missed_occurred as missed_promise,
        {{ hours_between('joined.promised_deliver_by', 'coalesce(joined.delivered_at, joined.as_of)') }}
            as hours_past_promise,
        joined.ship_late_occurred,
        joined.ship_late_active,
        joined.ship_late_detected_at,
        joined.no_first_scan_occurred,
        joined.no_first_scan_active,
        joined.no_first_scan_detected_at,
        joined.scan_gap_occurred,
        joined.scan_gap_active,
        joined.scan_gap_detected_at,
        joined.scan_gap_threshold_hours,
        joined.carrier_exception_occurred,
        joined.carrier_exception_active,
        joined.carrier_exception_detected_at,
        joined.carrier_exception_reason,
        joined.fulfillment_hold_occurred,
        joined.fulfillment_hold_active,
        joined.fulfillment_hold_detected_at,
        joined.fulfillment_hold_category,
        joined.lost_occurred,
        joined.lost_active,
        joined.lost_detected_at,
        joined.promise_missed_occurred,
        joined.promise_missed_active,
        joined.promise_missed_detected_at,
        joined.as_of
    from joined
)
{%- endmacro %}


{#- Per moment x order, over the gaps (closed, or open since the last scan) of `rel` (columns
    as_of, order_id, threshold_hours, breach_clock and `business_hours`): the longest gap in
    carrier hours, the first scan-gap breach (where the carrier clock passes breach_clock) and
    the first lost breach (`calendar_hours` over var lost_after_days days from `started_at`). -#}
{% macro gap_breach_rollup(rel, business_hours, calendar_hours, started_at, max_name, breach_name, lost_name) -%}
    select
        {{ rel }}.as_of,
        {{ rel }}.order_id,
        max({{ rel }}.{{ business_hours }}) as {{ max_name }},
        min(
            case
                when {{ rel }}.{{ business_hours }} > {{ rel }}.threshold_hours
                    then {{ carrier_clock_instant(rel ~ '.breach_clock', 'breach_day') }}
            end
        ) as {{ breach_name }},
        min(
            case
                when {{ calendar_hours }} > {{ var('lost_after_days') }} * 24
                    then {{ add_hours(started_at, var('lost_after_days') * 24) }}
            end
        ) as {{ lost_name }}
    from {{ rel }}
    left join calendar as breach_day
        on {{ rel }}.{{ business_hours }} > {{ rel }}.threshold_hours
        and breach_day.is_carrier_day
        and breach_day.carrier_day_index
        = cast(floor({{ rel }}.breach_clock / 24.0) as integer) + 1
    group by {{ rel }}.as_of, {{ rel }}.order_id
{%- endmacro %}


{#- The earliest non-null of a list of timestamptz expressions (least() skips nulls on
    PostgreSQL, not on DuckDB), as nested CASEs. -#}
{% macro earliest_of(expressions) -%}
    {%- if expressions | length == 1 -%}
        {{ expressions[0] }}
    {%- else -%}
        {%- set rest = earliest_of(expressions[1:]) -%}
        (case
            when {{ expressions[0] }} is null then {{ rest }}
            when ({{ rest }}) is null or {{ expressions[0] }} < {{ rest }} then {{ expressions[0] }}
            else {{ rest }}
        end)
    {%- endif -%}
{%- endmacro %}


{#- ===== ml feature block (owner: ml/, issue 9) ==========================================
    Extra columns for the lateness model (ml/features.py), appended after order_state's own
    (`final`): every one as known at the row's as_of, from the CTEs above or checkout fields.
      item_count               units on the order version valid then (ml_items)
      exception_scan_count     carrier exception scans known then (exception_events)
      carrier_est_delivery_at  the carrier's estimate valid then, latest over parcels still
                               with the carrier
      edd_revisions            times the estimate changed over the tracker versions known then
                               (the parcel with most changes; 0 with one version per tracker)
      milestone_reached_at     when the current milestone was reached
      unscanned_parcels        parcels with a label, no physical scan, still with the carrier
    Nothing outside this block reads these columns. -#}
{% macro as_of_ml_features() -%}
-- the lines of the order version valid then (the one `orders` took its checkout fields from):
-- its current units (current_quantity: after edits, refunds and returns); before the first
-- version is known, the units ordered at checkout (Shopify keeps `quantity`; a line added by a
-- later edit still counts). Units are summed per version first, so the moments join on
-- (order_id, version_number) rather than on every line of every version.
ml_version_units as (
    select
        order_id,
        version_number,
        sum(current_quantity) as current_units,
        sum(quantity) as ordered_units
    from {{ ref('stg_storefront__order_line_versions') }}
    group by order_id, version_number
),

ml_items as (
    select
        orders.as_of,
        orders.order_id,
        case
            when orders.is_version_known then units.current_units else units.ordered_units
        end as item_count
    from orders
    inner join ml_version_units as units
        on orders.order_id = units.order_id
        and orders.known_version_number = units.version_number
),

ml_exception_scans as (
    select as_of, order_id, count(*) as exception_scan_count
    from exception_events
    group by as_of, order_id
),

ml_parcels as (
    select
        as_of,
        order_id,
        max(case when not is_carrier_terminal then est_delivery_date end) as carrier_est_delivery_at,
        sum(
            case
                when not is_carrier_terminal and label_created_at is not null
                    and last_scan_at is null then 1
                else 0
            end
        ) as unscanned_parcels
    from parcels
    group by as_of, order_id
),

ml_tracker_estimates as (
    select
        shipments.as_of,
        shipments.order_id,
        shipments.shipment_id,
        count(distinct trackers.est_delivery_date) as estimates
    from shipments
    inner join {{ ref('stg_carrier__trackers') }} as trackers
        on trackers.tracking_number = shipments.tracking_number
        and trackers.known_at <= shipments.as_of
    group by shipments.as_of, shipments.order_id, shipments.shipment_id
),

ml_edd_revisions as (
    select as_of, order_id, max(estimates) - 1 as edd_revisions
    from ml_tracker_estimates
    where estimates > 0
    group by as_of, order_id
),

ml_final as (
    select
        final.*,
        ml_items.item_count,
        coalesce(ml_exception_scans.exception_scan_count, 0) as exception_scan_count,
        ml_parcels.carrier_est_delivery_at,
        coalesce(ml_edd_revisions.edd_revisions, 0) as edd_revisions,
        current_progress.progress_at as milestone_reached_at,
        coalesce(ml_parcels.unscanned_parcels, 0) as unscanned_parcels
    from final
    left join ml_items on final.as_of = ml_items.as_of and final.order_id = ml_items.order_id
    left join ml_exception_scans
        on final.as_of = ml_exception_scans.as_of and final.order_id = ml_exception_scans.order_id
    left join ml_parcels on final.as_of = ml_parcels.as_of and final.order_id = ml_parcels.order_id
    left join ml_edd_revisions
        on final.as_of = ml_edd_revisions.as_of and final.order_id = ml_edd_revisions.order_id
    left join current_progress
        on final.as_of = current_progress.as_of and final.order_id = current_progress.order_id
)
{%- endmacro %}
{#- ===== end of the ml feature block ===================================================== -#}
