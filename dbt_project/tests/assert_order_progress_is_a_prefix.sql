-- Progress never has holes: if an order reached a milestone, it reached every milestone of lower
-- rank from the 3PL onwards (released_to_warehouse .. delivered), so a late or out-of-order
-- event can never leave an order "delivered but not in transit". Returns the offending rows.
select later.order_id, later.milestone as reached_milestone, earlier.milestone as missing_milestone
from {{ ref('fct_order_milestones') }} as later
inner join {{ ref('fct_order_milestones') }} as earlier
    on later.order_id = earlier.order_id
    and earlier.milestone_rank between 3 and later.milestone_rank - 1
where later.is_reached
    and later.milestone_rank >= 3
    and not earlier.is_reached
