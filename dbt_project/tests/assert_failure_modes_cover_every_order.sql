-- Each single-valued dimension of fct_failure_modes_daily counts every order of order_state once.
with per_type as (
    select dimension_type, sum(orders) as orders
    from {{ ref('fct_failure_modes_daily') }}
    where dimension_type in ('carrier', 'warehouse', 'lane')
    group by dimension_type
),

total as (
    select count(*) as orders from {{ ref('order_state') }}
)

select per_type.dimension_type, per_type.orders, total.orders as expected_orders
from per_type
cross join total
where per_type.orders <> total.orders
