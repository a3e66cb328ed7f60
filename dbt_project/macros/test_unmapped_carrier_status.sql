{#- Returns every row whose vendor (source_format, status, status_detail) has no row in seed
    carrier_status_map, i.e. fell through the taxonomy to 'unknown' (values mapped to 'unknown'
    on purpose, like EasyPost `error`, are not counted). Use with severity warn: vendors add
    values, which are kept and counted, never dropped; the warning's count is the row count. -#}
{% test unmapped_carrier_status(model, column_name, format_column='source_format', status_column='status', status_detail_column='status_detail') %}
    select
        tracked.{{ format_column }} as source_format,
        tracked.{{ status_column }} as status,
        tracked.{{ status_detail_column }} as status_detail,
        tracked.{{ column_name }} as canonical_status
    from {{ model }} as tracked
    where not exists (
        select 1
        from {{ ref('carrier_status_map') }} as status_map
        where lower(status_map.source_format) = lower(tracked.{{ format_column }})
          and lower(status_map.status) = lower(tracked.{{ status_column }})
          and (
              lower(status_map.status_detail) = lower(coalesce(tracked.{{ status_detail_column }}, ''))
              or status_map.status_detail = '*'
          )
    )
{% endtest %}
