{#- Canonical carrier status (taxonomy documented in models/staging/carrier/_carrier__models.yml)
    for a vendor (source_format, status, status_detail): seed carrier_status_map, an exact
    status_detail row wins over the '*' row; anything unmapped is 'unknown' (and counted by the
    unmapped_carrier_status test). Matching is case-insensitive. -#}
{% macro canonical_carrier_status(format_expr, status_expr, status_detail_expr) -%}
    coalesce((
        select status_map.canonical_status
        from {{ ref('carrier_status_map') }} as status_map
        where lower(status_map.source_format) = lower({{ format_expr }})
          and lower(status_map.status) = lower({{ status_expr }})
          and (
              lower(status_map.status_detail) = lower(coalesce({{ status_detail_expr }}, ''))
              or status_map.status_detail = '*'
          )
        order by case when status_map.status_detail = '*' then 1 else 0 end
        limit 1
    ), 'unknown')
{%- endmacro %}
