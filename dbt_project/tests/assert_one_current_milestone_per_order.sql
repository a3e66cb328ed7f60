-- Every order has exactly one current (furthest) progress milestone.
select order_id, count(*) as current_rows
from {{ ref('fct_order_milestones') }}
where is_current
group by order_id
having count(*) <> 1
union all
select order_id, 0
from {{ ref('stg_storefront__orders') }}
where order_id not in (select order_id from {{ ref('fct_order_milestones') }} where is_current)
