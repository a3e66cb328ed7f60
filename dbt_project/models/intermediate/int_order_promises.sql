-- One promise window per order (rule in _int_promises__models.yml; the simulator's
-- orderwatch_dagster/sim/calendar.py computes the date shown at checkout the same way).

with

orders as (

    select * from {{ ref('stg_storefront__orders') }} where is_latest_version

),

customers as (

    select * from {{ ref('stg_storefront__customers') }} where is_latest_version

),

-- an order split over several fulfillment orders is promised from the first one routed
first_fulfillment_orders as (

    select order_id, warehouse_name
    from (
        select
            order_id,
            warehouse_name,
            row_number() over (
                partition by order_id
                order by created_at, fulfillment_order_id
            ) as routing_rank
        from {{ ref('stg_oms__fulfillment_orders') }}
        where is_latest_version
    ) as ranked
    where routing_rank = 1

),

{{ promise_reference_ctes() }},

order_terms as (

{{ order_terms_select() }}

),

{{ promise_window_ctes('order_terms', 'final') }}

select * from final
