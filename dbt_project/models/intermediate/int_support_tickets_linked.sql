-- Every Zendesk ticket version linked to its Shopify order (docs/feeds.md "support_tickets",
-- "Linking a ticket to its order"):
-- 1. by the order number the ticket carries (`external_id` or the "Order number" field), when
--    such an order exists;
-- 2. else by the requester's e-mail (the sideloaded user's, else the e-mail's sender) matched
--    to Shopify customers' and orders' e-mails: the requester's most recent order that was
--    open when the ticket was created (placed by then, not cancelled by then, not shown
--    delivered by then);
-- 3. unlinked, with the reason, otherwise. Ambiguous e-mails stay unlinked: the e-mail belongs
--    to more than one Shopify customer, or the two most recent open orders were placed less
--    than 24 h apart (nothing in the ticket tells them apart).
with

tickets as (
    select * from {{ ref('stg_support__tickets') }}
),

users as (
    select user_id, email from {{ ref('stg_support__users') }} where is_latest_version
),

orders as (
    select
        order_id, order_name, customer_id, lower(trim(email)) as email, placed_at, cancelled_at,
        fulfillment_status
    from {{ ref('stg_storefront__orders') }}
    where is_latest_version
),

customers as (
    select customer_id, lower(trim(email)) as email
    from {{ ref('stg_storefront__customers') }}
    where is_latest_version and email is not null
),

-- when the storefront showed every fulfillment of a fully fulfilled order delivered (null while
-- one is not): Shopify's own view, so linking needs only the storefront and support feeds
deliveries as (
    select
        fulfillments.order_id,
        case
            when count(*) = count(case when fulfillments.shipment_status = 'delivered' then 1 end)
                then max(fulfillments.updated_at)
        end as delivered_known_at
    from {{ ref('stg_storefront__fulfillments') }} as fulfillments
    inner join orders on fulfillments.order_id = orders.order_id
    where orders.fulfillment_status = 'fulfilled'
    group by fulfillments.order_id
),

-- one requester e-mail per ticket (its latest version's requester)
requests as (
    select
        tickets.ticket_id,
        tickets.created_at,
        coalesce(users.email, tickets.via_email) as requester_email
    from tickets
    left join users on tickets.requester_id = users.user_id
    where tickets.is_latest_version
),

-- the orders of that e-mail: the customer's and the order's own contact e-mail
email_orders as (
    select requests.ticket_id, orders.order_id
    from requests
    inner join customers on requests.requester_email = customers.email
    inner join orders on customers.customer_id = orders.customer_id
    union
    select requests.ticket_id, orders.order_id
    from requests
    inner join orders on requests.requester_email = orders.email
),

email_customers as (
    select email_orders.ticket_id, count(distinct orders.customer_id) as customers
    from email_orders
    inner join orders on email_orders.order_id = orders.order_id
    group by email_orders.ticket_id
),

open_orders as (
    select
        requests.ticket_id,
        orders.order_id,
        orders.order_name,
        orders.placed_at,
        row_number() over (
            partition by requests.ticket_id order by orders.placed_at desc, orders.order_id desc
        ) as recency
    from requests
    inner join email_orders on requests.ticket_id = email_orders.ticket_id
    inner join orders on email_orders.order_id = orders.order_id
    left join deliveries on orders.order_id = deliveries.order_id
    where orders.placed_at <= requests.created_at
        and (orders.cancelled_at is null or orders.cancelled_at > requests.created_at)
        and (deliveries.delivered_known_at is null or deliveries.delivered_known_at > requests.created_at)
),

email_links as (
    select
        requests.ticket_id,
        requests.requester_email,
        coalesce(email_customers.customers, 0) as customers,
        count(open_orders.order_id) as open_orders,
        max(case when open_orders.recency = 1 then open_orders.order_id end) as order_id,
        max(case when open_orders.recency = 1 then open_orders.order_name end) as order_name,
        max(case when open_orders.recency = 1 then open_orders.placed_at end) as latest_placed_at,
        max(case when open_orders.recency = 2 then open_orders.placed_at end) as previous_placed_at
    from requests
    left join email_customers on requests.ticket_id = email_customers.ticket_id
    left join open_orders on requests.ticket_id = open_orders.ticket_id
    group by requests.ticket_id, requests.requester_email, email_customers.customers
),

email_verdicts as (
    select
        *,
        case
            when requester_email is null then 'no_requester_email'
            when customers = 0 then 'unknown_email'
            when customers > 1 then 'ambiguous'
            when open_orders = 0 then 'no_open_order'
            when previous_placed_at is not null
                and latest_placed_at < {{ dbt.dateadd('hour', 24, 'previous_placed_at') }} then 'ambiguous'
            else 'requester_email'
        end as email_link
    from email_links
),

linked as (
    select
        tickets.ticket_id,
        tickets.status,
        tickets.is_wismo,
        tickets.is_status_question,
        tickets.order_name as ticket_order_name,
        email_verdicts.requester_email,
        case
            when named.order_id is not null then 'order_number'
            else email_verdicts.email_link
        end as link_method,
        case
            when named.order_id is not null then named.order_id
            when email_verdicts.email_link = 'requester_email' then email_verdicts.order_id
        end as order_id,
        case
            when named.order_id is not null then named.order_name
            when email_verdicts.email_link = 'requester_email' then email_verdicts.order_name
        end as order_name,
        email_verdicts.open_orders as requester_open_orders,
        tickets.created_at,
        tickets.known_at,
        tickets.valid_to,
        tickets.version_number,
        tickets.is_latest_version,
        tickets.ingested_at
    from tickets
    left join orders as named on tickets.order_name = named.order_name
    left join email_verdicts on tickets.ticket_id = email_verdicts.ticket_id
)

select
    *,
    link_method in ('order_number', 'requester_email') as is_linked
from linked
