-- A delivered order is closed and shows delivered (cancellation aside), whatever came after.
select order_id, current_milestone, is_open
from {{ ref('order_state') }}
where delivered_at is not null
    and (is_open or current_milestone not in ('delivered', 'cancelled'))
