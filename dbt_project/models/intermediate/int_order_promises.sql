-- One promise window per order (rule in _int_promises__models.yml; the simulator's
-- orderwatch_dagster/sim/calendar.py computes the date shown at checkout the same way).
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" %}

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

service_levels as (

    select * from {{ ref('service_levels') }}

),

default_service as (

    select * from service_levels where service_code = '{{ var("default_service_code", "ground") }}'

),

warehouses as (

    select * from {{ ref('warehouses') }}

),

regions as (

    select * from {{ ref('destination_regions') }}

),

calendar as (

    select * from {{ ref('int_business_days_enumerated') }}

),

order_terms as (

    select
        orders.order_id,
        orders.placed_at,
        {{ to_local_timestamp('orders.placed_at', shop_tz) }} as placed_local,
        coalesce(service_levels.service_code, default_service.service_code) as service_code,
        coalesce(service_levels.transit_business_days, default_service.transit_business_days)
            as transit_business_days,
        coalesce(service_levels.cutoff_local_time, default_service.cutoff_local_time)
            as cutoff_local_time,
        coalesce(
            customers.customer_tier,
            case when {{ tags_include('orders.customer_tags', "'vip'") }} then 'vip' else 'standard' end
        ) as customer_tier,
        first_fulfillment_orders.warehouse_name,
        warehouses.handling_business_days as warehouse_handling_business_days,
        orders.promised_delivery_date as storefront_delivery_date,
        orders.destination_province_code,
        regions.region as seed_region,
        regions.time_zone as seed_time_zone,
        warehouse_regions.time_zone as warehouse_time_zone

    from orders
    cross join default_service
    left join service_levels on orders.service_code = service_levels.service_code
    left join customers on orders.customer_id = customers.customer_id
    left join first_fulfillment_orders on orders.order_id = first_fulfillment_orders.order_id
    left join warehouses on first_fulfillment_orders.warehouse_name = warehouses.location_name
    left join regions as warehouse_regions on warehouses.origin_state = warehouse_regions.province_code
    left join regions
        on orders.destination_province_code = regions.province_code
        and coalesce(orders.destination_country_code, 'US') = 'US'

),

{{ promise_window_ctes('order_terms', 'final') }}

select * from final
