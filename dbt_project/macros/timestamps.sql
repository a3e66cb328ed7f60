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
