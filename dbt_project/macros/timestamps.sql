{#- Time-zone arithmetic. `AT TIME ZONE` behaves the same on DuckDB (ICU) and PostgreSQL:
    timestamptz -> local timestamp, local timestamp -> timestamptz. -#}

{#- A UTC instant as a local timestamp (no zone) in `tz_expr`. -#}
{% macro to_local_timestamp(timestamptz_expr, tz_expr) -%}
    ({{ timestamptz_expr }} at time zone {{ tz_expr }})
{%- endmacro %}

{#- The last microsecond of local date `date_expr` in zone `tz_expr`, as timestamptz. -#}
{% macro end_of_local_day(date_expr, tz_expr) -%}
    ((cast({{ date_expr }} as timestamp) + interval '1 day' - interval '1 microsecond') at time zone {{ tz_expr }})
{%- endmacro %}

{#- The day a carrier's estimated delivery falls on, where the parcel is going. EasyPost sends
    a date-only estimate as midnight UTC (`2024-08-05T00:00:00Z` beside
    `est_delivery_date_local: 2024-08-05`): that day itself; a real moment is read in the
    destination's zone `tz_expr`. lib/packets.py `estimate_date` states it the same way. -#}
{% macro estimate_day(timestamptz_expr, tz_expr) -%}
    case
        when cast({{ to_local_timestamp(timestamptz_expr, "'UTC'") }} as time) = time '00:00:00'
            then cast({{ to_local_timestamp(timestamptz_expr, "'UTC'") }} as date)
        else cast({{ to_local_timestamp(timestamptz_expr, tz_expr) }} as date)
    end
{%- endmacro %}
