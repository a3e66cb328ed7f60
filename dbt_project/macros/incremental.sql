{#- The ingestion watermark of an incremental model: the latest `_ingested_at` already
    reflected in {{ this }} (column `column`), moved back by var incremental_lookback_hours so a
    load that committed after a dbt run started but stamped an earlier time is not skipped.
    Vendor timestamps are never the watermark: retried webhooks and late scans arrive with old
    vendor times. An empty target (or a fresh column) yields 1900-01-01: everything. -#}
{% macro ingestion_watermark(column='source_ingested_at') -%}
    (
        select {{ dbt.dateadd(
            'hour',
            -1 * (var('incremental_lookback_hours', 0) | int),
            'coalesce(max(' ~ column ~ "), cast('1900-01-01 00:00:00+00' as timestamptz))"
        ) }}
        from {{ this }}
    )
{%- endmacro %}
