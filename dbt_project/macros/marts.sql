{#- Helpers of the marts: "now", hour arithmetic, the milestone catalogue. -#}

{#- "Now" for as-of-dependent models: var as_of (ISO timestamp: tests, a manual `dbt build
    --vars`), else env var ORDERWATCH_DBT_AS_OF (the Dagster asset sets it from
    orderwatch_dagster.lib.settings.now(), defs/transform/assets.py), else the warehouse's current
    timestamp. The asset does not pass a var: --vars are part of dbt's partial-parse state check, so
    a moment that changes every run would re-parse the whole project every run. The env var is read
    only when executing (`execute` is false while parsing): one read at parse time would be
    recorded, and its changed value would re-parse every model calling this macro. -#}
{% macro orderwatch_as_of() -%}
    {%- set as_of = var('as_of', none) or (env_var('ORDERWATCH_DBT_AS_OF', '') if execute else '') -%}
    {%- if as_of -%}
        cast('{{ as_of }}' as timestamptz)
    {%- else -%}
        cast({{ dbt.current_timestamp() }} as timestamptz)
    {%- endif -%}
{%- endmacro %}

{#- Fractional hours from `start_expr` to `end_expr` (both timestamptz); the same on DuckDB and
    PostgreSQL (dbt.datediff counts hour boundaries, which loses the fraction). -#}
{% macro hours_between(start_expr, end_expr) -%}
    (cast(extract(epoch from ({{ end_expr }} - {{ start_expr }})) as double precision) / 3600.0)
{%- endmacro %}

{#- `ts_expr` plus a number of hours (may be a column expression). -#}
{% macro add_hours(ts_expr, hours_expr) -%}
    ({{ ts_expr }} + cast({{ hours_expr }} as double precision) * interval '1 hour')
{%- endmacro %}

{#- The milestone catalogue: (milestone, rank, kind, scope, expected anchor, offset hours).
    rank orders the happy path; exception milestones have no rank and no expected time.
    scope 'shipment' milestones are reached per ShipBob shipment and rolled up to the order by
    the furthest-behind shipment. Expected = anchor (int_order_promises column) + offset:
      order_placed          placed_at             +0   (by definition on time)
      payment_captured      placed_at             +1   (captured within an hour of checkout)
      released_to_warehouse placed_at             +4   (order sync to the 3PL)
      picked/packed/label   promised_ship_by      +0   (all warehouse work done by ship-by)
      carrier_accepted      promised_ship_by      +24  (first carrier scan the day after pickup)
      in_transit            promised_deliver_by   +0   (latest in-transit scan: a parcel still
                                                        moving after the promise is late; ground
                                                        parcels are in transit for days by design)
      out_for_delivery      promised_deliver_by   +0
      delivered             promised_deliver_by   +0   (end of the promised day, destination zone)
-#}
{% macro milestone_catalogue() -%}
    {{ return([
        ('order_placed', 1, 'progress', 'order', 'placed_at', 0),
        ('payment_captured', 2, 'progress', 'order', 'placed_at', 1),
        ('released_to_warehouse', 3, 'progress', 'shipment', 'placed_at', 4),
        ('picked', 4, 'progress', 'shipment', 'promised_ship_by', 0),
        ('packed', 5, 'progress', 'shipment', 'promised_ship_by', 0),
        ('label_created', 6, 'progress', 'shipment', 'promised_ship_by', 0),
        ('carrier_accepted', 7, 'progress', 'shipment', 'promised_ship_by', 24),
        ('in_transit', 8, 'progress', 'shipment', 'promised_deliver_by', 0),
        ('out_for_delivery', 9, 'progress', 'shipment', 'promised_deliver_by', 0),
        ('delivered', 10, 'progress', 'shipment', 'promised_deliver_by', 0),
        ('fulfillment_hold', none, 'exception', 'order', none, none),
        ('backordered', none, 'exception', 'order', none, none),
        ('address_issue', none, 'exception', 'order', none, none),
        ('delivery_failed', none, 'exception', 'order', none, none),
        ('return_to_sender', none, 'exception', 'order', none, none),
        ('return_started', none, 'exception', 'order', none, none),
        ('cancelled', none, 'exception', 'order', none, none),
    ]) }}
{%- endmacro %}

{#- The catalogue as a relation (select ... union all ...), for joins. -#}
{% macro milestone_catalogue_relation() -%}
    {%- for m in milestone_catalogue() %}
    select
        cast('{{ m[0] }}' as varchar) as milestone,
        cast({{ 'null' if m[1] is none else m[1] }} as integer) as milestone_rank,
        cast('{{ m[2] }}' as varchar) as milestone_kind,
        cast('{{ m[3] }}' as varchar) as milestone_scope,
        cast({{ 'null' if m[4] is none else "'" ~ m[4] ~ "'" }} as varchar) as expected_anchor,
        cast({{ 'null' if m[5] is none else m[5] }} as integer) as expected_offset_hours
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- The business-hour clock of a timestamptz: hours elapsed on business days of the shop
    calendar (int_business_days_enumerated joined as `cal_alias` on the local date of `ts_expr`)
    since the calendar's start. Differences of two clocks are business hours between them. -#}
{% macro business_clock(ts_expr, cal_alias) -%}
    (
        24.0 * ({{ cal_alias }}.business_day_index - case when {{ cal_alias }}.is_business_day then 1 else 0 end)
        + case
            when {{ cal_alias }}.is_business_day
                then {{ hours_between(
                    'cast(' ~ cal_alias ~ '.calendar_date as timestamp)',
                    to_local_timestamp(ts_expr, "'" ~ var('shop_time_zone') ~ "'")
                ) }}
            else 0
        end
    )
{%- endmacro %}

{#- The local date of a timestamptz in the shop's zone (join key to the calendar). -#}
{% macro shop_local_date(ts_expr) -%}
    cast({{ to_local_timestamp(ts_expr, "'" ~ var('shop_time_zone') ~ "'") }} as date)
{%- endmacro %}

{#- Inverse of business_clock: the instant a business-hour clock value is reached, given the
    calendar row `cal_alias` of the business day with index floor(clock / 24) + 1. -#}
{% macro business_clock_instant(clock_expr, cal_alias) -%}
    (
        (
            cast({{ cal_alias }}.calendar_date as timestamp)
            + (({{ clock_expr }}) - 24.0 * ({{ cal_alias }}.business_day_index - 1)) * interval '1 hour'
        ) at time zone '{{ var("shop_time_zone") }}'
    )
{%- endmacro %}

{#- The carrier clock: like business_clock, over carrier days (is_carrier_day: Monday to
    Saturday except the merchant's holidays; carriers scan on Saturdays), so a silence from
    Friday evening to Monday counts Saturday. Scan gaps are measured on it. -#}
{% macro carrier_clock(ts_expr, cal_alias) -%}
    (
        24.0 * ({{ cal_alias }}.carrier_day_index - case when {{ cal_alias }}.is_carrier_day then 1 else 0 end)
        + case
            when {{ cal_alias }}.is_carrier_day
                then {{ hours_between(
                    'cast(' ~ cal_alias ~ '.calendar_date as timestamp)',
                    to_local_timestamp(ts_expr, "'" ~ var('shop_time_zone') ~ "'")
                ) }}
            else 0
        end
    )
{%- endmacro %}

{#- Inverse of carrier_clock, given the calendar row `cal_alias` of the carrier day with index
    floor(clock / 24) + 1. -#}
{% macro carrier_clock_instant(clock_expr, cal_alias) -%}
    (
        (
            cast({{ cal_alias }}.calendar_date as timestamp)
            + (({{ clock_expr }}) - 24.0 * ({{ cal_alias }}.carrier_day_index - 1)) * interval '1 hour'
        ) at time zone '{{ var("shop_time_zone") }}'
    )
{%- endmacro %}


{#- The ORDER BY of the observation that decides an order's milestone time (fct_order_milestones,
    the as-of layer): the last shipment for shipment progress milestones (the furthest-behind
    shipment reached it last), the first occurrence otherwise; ties by evidence, then shipment. -#}
{% macro decisive_milestone_order(alias, catalogue='catalogue') -%}
    case
        when {{ catalogue }}.milestone_kind = 'progress' and {{ catalogue }}.milestone_scope = 'shipment'
            then {{ alias }}.actual_at
    end desc,
    {{ alias }}.actual_at,
    {{ alias }}.evidence_id,
    {{ alias }}.evidence_message,
    {{ alias }}.shipment_id
{%- endmacro %}
