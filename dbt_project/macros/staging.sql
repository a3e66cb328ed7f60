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

{#- EVERY version of every record of a raw feed, with its place in the record's history:
    `_version_rank` 1 = the latest (max(_updated_at), ties -> max(_ingested_at), then the hash),
    `_version_number` 1 = the oldest, `_valid_to` = the vendor update time of the next newer
    version (null for the latest). A version is what the vendor showed from its `_updated_at`
    (its known_at) until `_valid_to`; an older version that arrives after a newer one is ranked
    by vendor time, so the newer still wins. -#}
{% macro all_versions(relation) -%}
    {%- set newest_first = "versions._updated_at desc, versions._ingested_at desc, versions._record_hash desc" -%}
    {%- set oldest_first = "versions._updated_at, versions._ingested_at, versions._record_hash" -%}
    select
        versions.*,
        row_number() over (partition by versions._key order by {{ newest_first }}) as _version_rank,
        row_number() over (partition by versions._key order by {{ oldest_first }}) as _version_number,
        lead(versions._updated_at) over (partition by versions._key order by {{ oldest_first }})
            as _valid_to
    from {{ relation }} as versions
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
