{#- JSON helpers. `payload ->> 'k'` and `payload -> 'a' ->> 'k'` work on both engines; only the
    engine-specific parts (unnesting arrays, array membership) are dispatched here. -#}

{#- A FROM-clause fragment: one row per element of the JSON array `json_expr` (rows of a
    non-array or null value yield nothing), exposing `<alias>.value` (json/jsonb) and
    `<alias>.ordinal` (1-based position). Usage: `from t {{ json_array_rows("t.payload -> 'x'", 'x') }}` -#}
{% macro json_array_rows(json_expr, alias) -%}
    {{ return(adapter.dispatch('json_array_rows')(json_expr, alias)) }}
{%- endmacro %}

{% macro default__json_array_rows(json_expr, alias) -%}
    cross join lateral jsonb_array_elements(
        case when jsonb_typeof({{ json_expr }}) = 'array' then {{ json_expr }} else '[]'::jsonb end
    ) with ordinality as {{ alias }}(value, ordinal)
{%- endmacro %}

{% macro duckdb__json_array_rows(json_expr, alias) -%}
    cross join lateral unnest(
        cast(case when json_type({{ json_expr }}) = 'ARRAY' then {{ json_expr }} end as json[])
    ) with ordinality as {{ alias }}(value, ordinal)
{%- endmacro %}

{#- True when the JSON array `json_expr` holds the string `value` (case-insensitive); false
    when it does not or is not an array. -#}
{% macro json_array_contains_text(json_expr, value) -%}
    {{ return(adapter.dispatch('json_array_contains_text')(json_expr, value)) }}
{%- endmacro %}

{% macro default__json_array_contains_text(json_expr, value) -%}
    coalesce((
        select bool_or(lower(element) = lower({{ value }}))
        from jsonb_array_elements_text(
            case when jsonb_typeof({{ json_expr }}) = 'array' then {{ json_expr }} else '[]'::jsonb end
        ) as element
    ), false)
{%- endmacro %}

{% macro duckdb__json_array_contains_text(json_expr, value) -%}
    coalesce(list_contains(
        list_transform(
            cast(case when json_type({{ json_expr }}) = 'ARRAY' then {{ json_expr }} end as varchar[]),
            lambda element: lower(element)
        ),
        lower({{ value }})
    ), false)
{%- endmacro %}
