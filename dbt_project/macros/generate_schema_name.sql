{#- Models land in the storage contract's schemas (raw, staging, intermediate, marts, ops) by
    name, not dbt's default "<target schema>_<custom schema>". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
