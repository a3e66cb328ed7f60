{#- The reference CTEs the promise terms read (order_terms_select, promise_window_ctes):
    `calendar`, `service_levels`, `default_service` (var default_service_code), `warehouses`,
    `regions`; comma-separated, for a WITH clause. -#}
{% macro promise_reference_ctes() -%}
calendar as (
    select * from {{ ref('int_business_days_enumerated') }}
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
)
{%- endmacro %}


{#- The promise terms of each order (the `terms_cte` of promise_window_ctes), as the body of a
    CTE: a SELECT over the CTEs `orders` (order_id, placed_at, service_code, customer_id,
    customer_tags, promised_delivery_date, destination_province_code, destination_country_code),
    `default_service` / `service_levels` (seed service_levels), `customers` (customer_id,
    customer_tier), `first_fulfillment_orders` (order_id, warehouse_name), `warehouses` and
    `regions` (seeds). The columns named in `keys` (as_of in the as-of layer) pass through and
    join customers and routing at the same key. Used by int_order_promises (latest knowledge)
    and the as-of layer (macros/as_of.sql). -#}
{% macro order_terms_select(keys=[]) -%}
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" -%}
    select
        {%- for key in keys %}
        orders.{{ key }},
        {%- endfor %}
        orders.order_id,
        orders.placed_at,
        {{ to_local_timestamp('orders.placed_at', shop_tz) }} as placed_local,
        coalesce(service_levels.service_code, default_service.service_code) as service_code,
        coalesce(service_levels.transit_business_days, default_service.transit_business_days)
            as transit_business_days,
        coalesce(service_levels.cutoff_local_time, default_service.cutoff_local_time)
            as cutoff_local_time,
        -- the customer record's tier, else the tags on the order; unknown tags (null: the
        -- as-of layer before the order's first version is known) mean standard, as untagged
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
    left join customers
        on orders.customer_id = customers.customer_id
        {%- for key in keys %} and orders.{{ key }} = customers.{{ key }}{% endfor %}
    left join first_fulfillment_orders
        on orders.order_id = first_fulfillment_orders.order_id
        {%- for key in keys %} and orders.{{ key }} = first_fulfillment_orders.{{ key }}{% endfor %}
    left join warehouses on first_fulfillment_orders.warehouse_name = warehouses.location_name
    left join regions as warehouse_regions on warehouses.origin_state = warehouse_regions.province_code
    left join regions
        on orders.destination_province_code = regions.province_code
        and coalesce(orders.destination_country_code, 'US') = 'US'
{%- endmacro %}


{#- The promise window (rule in models/intermediate/_int_promises__models.yml; the simulator's
    orderwatch_dagster/sim/calendar.py computes the date shown at checkout the same way), as CTEs
    appended to a WITH clause that already holds `terms_cte` (one row per order, or per order x
    snapshot: the columns named in `keys` pass through). `terms_cte` columns: order_id,
    placed_at, placed_local, service_code, transit_business_days, cutoff_local_time,
    customer_tier, warehouse_name, warehouse_handling_business_days, storefront_delivery_date,
    destination_province_code, seed_region, seed_time_zone, warehouse_time_zone. Needs a `calendar` CTE
    (int_business_days_enumerated). Defines `out_cte`. Used by int_order_promises (latest
    knowledge) and the as-of layer (macros/as_of.sql: tier and routing as known then). -#}
{% macro promise_window_ctes(terms_cte, out_cte, keys=[]) -%}
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" -%}
{{ out_cte }}_windows as (

    select
        {{ terms_cte }}.*,
        cast(case
            when customer_tier = 'vip' then {{ var('vip_handling_business_days') }}
            else coalesce(
                warehouse_handling_business_days, {{ var('default_handling_business_days', 1) }}
            )
        end as integer) as handling_business_days,
        -- at or after the cut-off counts from the next day (seed service_levels)
        cast(placed_local as time) >= cutoff_local_time as is_after_cutoff
    from {{ terms_cte }}

),

{{ out_cte }}_days as (

    select
        windows.*,
        -- the first business day on/after the (cut-off adjusted) local placement date
        placed_day.next_business_day_index as order_day_index
    from {{ out_cte }}_windows as windows
    left join calendar as placed_day
        on placed_day.calendar_date = cast(
            case
                when windows.is_after_cutoff
                    then {{ dbt.dateadd('day', 1, 'cast(windows.placed_local as date)') }}
                else cast(windows.placed_local as date)
            end as date
        )

),

{{ out_cte }}_dated as (

    select
        order_days.*,
        ship_day.calendar_date as ship_date,
        delivery_day.calendar_date as computed_delivery_date
    from {{ out_cte }}_days as order_days
    left join calendar as ship_day
        on ship_day.is_business_day
        and ship_day.business_day_index = order_days.order_day_index + order_days.handling_business_days
    left join calendar as delivery_day
        on delivery_day.is_business_day
        and delivery_day.business_day_index
            = order_days.order_day_index + order_days.handling_business_days
            + order_days.transit_business_days

),

{{ out_cte }} as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
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
        -- the end of the ship date where the warehouse works (ShipBob's estimated fulfillment
        -- date is a warehouse-local day); the shop's zone until routed
        {{ end_of_local_day('ship_date', 'coalesce(warehouse_time_zone, ' ~ shop_tz ~ ')') }}
            as promised_ship_by,
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

    from {{ out_cte }}_dated

)
{%- endmacro %}
