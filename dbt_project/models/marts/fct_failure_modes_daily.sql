-- Recurring failure modes for operations: per day (the order's placement date in the shop's
-- time zone) x dimension (carrier, warehouse, lane, sku, reason) the order count, the orders
-- each rule fired on (occurred by as_of), missed promises, the median hours late of the missed
-- ones and their WISMO tickets. dimension_type 'reason' has one row per rule that fired
-- ('none' for orders without any), so its orders add up to more than the day's orders.

with

state as (
    select * from {{ ref('order_state') }}
),

lines as (
    select * from {{ ref('stg_storefront__order_lines') }}
),

orders as (
    select
        state.*,
        cast(
            {{ to_local_timestamp('state.placed_at', "'" ~ var('shop_time_zone') ~ "'") }} as date
        ) as report_date,
        case when ship_late_occurred then 1 else 0 end as is_ship_late,
        case when no_first_scan_occurred then 1 else 0 end as is_no_first_scan,
        case when scan_gap_occurred then 1 else 0 end as is_scan_gap,
        case when carrier_exception_occurred then 1 else 0 end as is_carrier_exception,
        case when fulfillment_hold_occurred then 1 else 0 end as is_fulfillment_hold,
        case when lost_occurred then 1 else 0 end as is_lost,
        case when missed_promise then 1 else 0 end as is_missed,
        case
            when ship_late_occurred or no_first_scan_occurred or scan_gap_occurred
                or carrier_exception_occurred or fulfillment_hold_occurred or lost_occurred
                then 1
            else 0
        end as is_exception
    from state
),

reasons as (
    select order_id, 'ship_late' as reason from orders where is_ship_late = 1
    union all
    select order_id, 'no_first_scan' from orders where is_no_first_scan = 1
    union all
    select order_id, 'scan_gap' from orders where is_scan_gap = 1
    union all
    select order_id, 'carrier_exception' from orders where is_carrier_exception = 1
    union all
    select order_id, 'fulfillment_hold:' || coalesce(fulfillment_hold_category, 'other')
    from orders where is_fulfillment_hold = 1
    union all
    select order_id, 'lost' from orders where is_lost = 1
    union all
    select order_id, 'promise_missed' from orders where is_missed = 1
    union all
    select order_id, 'none' from orders where is_exception = 0 and is_missed = 0
),

skus as (
    select distinct order_id, coalesce(sku, 'unknown') as sku from lines
),

dimensions as (
    select order_id, 'carrier' as dimension_type, coalesce(carrier, 'unknown') as dimension_value
    from orders
    union all
    select order_id, 'warehouse', coalesce(warehouse_name, 'unknown') from orders
    union all
    select order_id, 'lane', lane from orders
    union all
    select order_id, 'sku', sku from skus
    union all
    select order_id, 'reason', reason from reasons
),

final as (
    select
        orders.report_date,
        dimensions.dimension_type,
        dimensions.dimension_value,
        count(*) as orders,
        sum(orders.is_exception) as exception_orders,
        sum(orders.is_ship_late) as ship_late_orders,
        sum(orders.is_no_first_scan) as no_first_scan_orders,
        sum(orders.is_scan_gap) as scan_gap_orders,
        sum(orders.is_carrier_exception) as carrier_exception_orders,
        sum(orders.is_fulfillment_hold) as fulfillment_hold_orders,
        sum(orders.is_lost) as lost_orders,
        sum(orders.is_missed) as missed_promises,
        percentile_cont(0.5) within group (
            order by case when orders.is_missed = 1 then orders.hours_past_promise end
        ) as median_hours_late,
        sum(orders.wismo_ticket_count) as wismo_tickets,
        max(orders.as_of) as as_of
    from dimensions
    inner join orders on dimensions.order_id = orders.order_id
    group by orders.report_date, dimensions.dimension_type, dimensions.dimension_value
)

select
    cast(report_date as varchar) || '|' || dimension_type || '|' || dimension_value
        as failure_mode_day_id,
    *
from final
