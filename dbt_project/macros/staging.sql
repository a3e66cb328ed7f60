{#- The latest version of every record of a raw feed: raw rows are versions, (_key,
    _record_hash) unique; latest = max(_updated_at), ties -> max(_ingested_at) (then the hash,
    so the choice is deterministic). Used as the body of staging models' `source` CTE. -#}
{% macro latest_versions(relation) -%}
    select *
    from (
        select
            versions.*,
            row_number() over (
                partition by versions._key
                order by versions._updated_at desc, versions._ingested_at desc, versions._record_hash desc
            ) as _version_rank
        from {{ relation }} as versions
    ) as ranked
    where _version_rank = 1
{%- endmacro %}

{#- A vendor timestamp (ISO-8601 with offset or Z) as UTC timestamptz. -#}
{% macro json_timestamp(json_text_expr) -%}
    cast(nullif({{ json_text_expr }}, '') as timestamptz)
{%- endmacro %}

{#- A digit-only text as bigint, else null (ShipBob reference_id is free text at the vendor). -#}
{% macro text_to_bigint(text_expr) -%}
    case when {{ text_expr }} ~ '^[0-9]+$' then cast({{ text_expr }} as bigint) end
{%- endmacro %}

{#- True when a Shopify comma-separated tag string holds `tag_literal` (case- and
    space-insensitive); false for null/empty tags. -#}
{% macro tags_include(tags_expr, tag_literal) -%}
    (',' || replace(lower(coalesce({{ tags_expr }}, '')), ' ', '') || ',' like '%,' || lower({{ tag_literal }}) || ',%')
{%- endmacro %}
