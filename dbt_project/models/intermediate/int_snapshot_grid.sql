-- The moments of the as-of layer (marts.order_state_snapshots), never after "now" (var as_of),
-- from the first order's placement; "now" itself is always one of them. var snapshot_grid:
--   {every_hours: 6}                         every 6 h on the hour (UTC)
--   {daily_at: "15:00"}                      each day at that local time (var shop_time_zone)
--   add {days: N} to either: only the last N days before now (dbt_project.yml: every 6 h over
--   the last 7 days, which the hourly pipeline can afford; a training set asks for more)
--   {moments: ["2026-10-05T15:00:00Z", ...]} exactly these moments
--   {relation: "<schema>.<table>"}           the `as_of` column of a table the caller wrote
{%- set grid = var('snapshot_grid', {}) or {} %}
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" %}

with

now_moment as (
    select {{ orderwatch_as_of() }} as as_of
),

bounds as (
    select min(placed_at) as first_at
    from {{ ref('stg_storefront__orders') }}
),

days as (
    select calendar.calendar_date
    from {{ ref('int_business_days_enumerated') }} as calendar
    cross join bounds
    cross join now_moment
    where calendar.calendar_date >= {{ dbt.dateadd('day', -1, 'cast(bounds.first_at as date)') }}
        and calendar.calendar_date <= {{ dbt.dateadd('day', 1, 'cast(now_moment.as_of as date)') }}
),

candidates as (
{%- if grid.get('moments') %}
    {%- for moment in grid['moments'] %}
    select cast('{{ moment }}' as timestamptz) as as_of
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
{%- elif grid.get('relation') %}
    select cast(as_of as timestamptz) as as_of from {{ grid['relation'] }}
{%- elif grid.get('daily_at') %}
    select cast(cast(calendar_date as varchar) || ' {{ grid["daily_at"] }}' as timestamp) at time zone {{ shop_tz }}
        as as_of
    from days
{%- else %}
    {%- set every = (grid.get('every_hours', 6) | int) %}
    select (cast(calendar_date as timestamp) + hours.hour_of_day * interval '1 hour') at time zone 'UTC'
        as as_of
    from days
    cross join (
        {%- for hour in range(0, 24, every) %}
        select {{ hour }} as hour_of_day{% if not loop.last %} union all{% endif %}
        {%- endfor %}
    ) as hours
{%- endif %}
)

select candidates.as_of
from candidates
cross join bounds
cross join now_moment
where candidates.as_of >= bounds.first_at and candidates.as_of < now_moment.as_of
{%- if grid.get('days') %}
    and candidates.as_of >= now_moment.as_of - interval '{{ grid["days"] | int }} days'
{%- endif %}

union

select as_of from now_moment
