-- One promise window per order (rule in _int_promises__models.yml; the simulator's
-- orderwatch_dagster/sim/calendar.py computes the date shown at checkout the same way).
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" %}

with

orders as (

    select * from {{ ref('stg_storefront__orders') }}

),

customers as (

    select * from {{ ref('stg_storefront__customers') }}

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
        regions.time_zone as seed_time_zone

    from orders
    cross join default_service
    left join service_levels on orders.service_code = service_levels.service_code
    left join customers on orders.customer_id = customers.customer_id
    left join first_fulfillment_orders on orders.order_id = first_fulfillment_orders.order_id
    left join warehouses on first_fulfillment_orders.warehouse_name = warehouses.location_name
    left join regions
        on orders.destination_province_code = regions.province_code
        and coalesce(orders.destination_country_code, 'US') = 'US'

),

windows as (

    select
        order_terms.*,
        cast(case
            when customer_tier = 'vip' then {{ var('vip_handling_business_days') }}
            else coalesce(
                warehouse_handling_business_days, {{ var('default_handling_business_days', 1) }}
            )
        end as integer) as handling_business_days,
        -- strictly after the cut-off counts from the next day (sim/calendar.py order_day)
        cast(placed_local as time) > cutoff_local_time as is_after_cutoff
    from order_terms

),

order_days as (

    select
        windows.*,
        -- the first business day on/after the (cut-off adjusted) local placement date
        placed_day.next_business_day_index as order_day_index
    from windows
    left join calendar as placed_day
        on placed_day.calendar_date = cast(
            case
                when windows.is_after_cutoff
                    then {{ dbt.dateadd('day', 1, 'cast(windows.placed_local as date)') }}
                else cast(windows.placed_local as date)
            end as date
        )

),

dated as (

    select
        order_days.*,
        ship_day.calendar_date as ship_date,
        delivery_day.calendar_date as computed_delivery_date
    from order_days
    left join calendar as ship_day
        on ship_day.is_business_day
        and ship_day.business_day_index = order_days.order_day_index + order_days.handling_business_days
    left join calendar as delivery_day
        on delivery_day.is_business_day
        and delivery_day.business_day_index
            = order_days.order_day_index + order_days.handling_business_days
            + order_days.transit_business_days

),

final as (

    select
        order_id,
        placed_at,
        placed_local,
        service_code,
        customer_tier,
        warehouse_name,
        handling_business_days,
        transit_business_days,
        is_after_cutoff,
        ship_date,
        {{ end_of_local_day('ship_date', shop_tz) }} as promised_ship_by,
        computed_delivery_date,
        coalesce(storefront_delivery_date, computed_delivery_date) as promised_delivery_date,
        {{ end_of_local_day(
            'coalesce(storefront_delivery_date, computed_delivery_date)',
            'coalesce(seed_time_zone, ' ~ shop_tz ~ ')'
        ) }} as promised_deliver_by,
        case when storefront_delivery_date is not null then 'storefront' else 'computed' end
            as promise_source,
        destination_province_code,
        coalesce(seed_region, 'unknown') as destination_region,
        coalesce(seed_time_zone, {{ shop_tz }}) as destination_time_zone

    from dated

)

select * from final
