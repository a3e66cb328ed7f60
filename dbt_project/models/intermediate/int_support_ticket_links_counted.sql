-- How the latest ticket versions were linked (int_support_tickets_linked): one row per link
-- method, unlinked reasons included, so unmatched tickets are counted, never dropped.
select
    link_method,
    is_linked,
    count(*) as tickets,
    sum(case when is_status_question then 1 else 0 end) as status_questions,
    sum(case when ticket_order_name is null then 1 else 0 end) as tickets_without_order_number
from {{ ref('int_support_tickets_linked') }}
where is_latest_version
group by link_method, is_linked
