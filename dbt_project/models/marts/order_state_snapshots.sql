{#- The as-of layer: one row per order x moment of the snapshot grid (int_snapshot_grid), with
    order_state's columns as they were known at that moment (facts with known_at <= as_of only;
    macros/as_of.sql). Separate from the live order_state, so replaying a past moment never
    overwrites it; training sets and backtests read many moments from here in one query.
    Incremental on as_of (delete+insert on order x as_of): an hourly run recomputes only the
    grid's moments within var snapshot_lookback_hours (24) before "now", and "now" itself; older
    moments keep their rows. The lookback is for facts that arrive late with an earlier known_at
    (a vendor update stamped before the poll that read it, a late scan, an older version
    arriving after a newer one): a fact known more than the lookback before the run changes
    moments this run does not recompute, so widen the var or run with --full-refresh (every
    moment of the grid) after a backfill or a long outage. The pre-hook first drops the stored rows
    of the moments this run recomputes (an order no longer kept at a moment, e.g. closed, must
    not survive from the run when that moment was "now") and of the moments that left the grid
    (past var snapshot_grid's `days`, the previous run's "now" when it is not a grid moment), so
    the table holds exactly the grid's moments, as a full refresh would. -#}
{{
    config(
        materialized='incremental',
        unique_key=['order_id', 'as_of'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook=[
            "{% if is_incremental() %}delete from {{ this }} where as_of >= {{ snapshot_lookback_start() }}"
            " or as_of not in (select as_of from {{ ref('int_snapshot_grid') }}){% endif %}"
        ],
    )
}}

{%- set grid_sql -%}
select as_of from {{ ref('int_snapshot_grid') }}
{%- if is_incremental() %}
where as_of >= {{ snapshot_lookback_start() }}
{%- endif %}
{%- endset %}

{{ order_state_as_of(grid_sql) }}
