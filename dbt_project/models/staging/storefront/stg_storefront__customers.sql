-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'storefront_customers')) }}

),

renamed as (

    select
        cast(source.payload ->> 'id' as bigint) as customer_id,
        source.payload ->> 'email' as email,
        source.payload ->> 'tags' as tags,
        -- Shopify tags are one comma-separated string: a tag `VIP` in any case means vip
        {{ tags_include("source.payload ->> 'tags'", "'vip'") }} as is_vip,
        case
            when {{ tags_include("source.payload ->> 'tags'", "'vip'") }} then 'vip'
            else 'standard'
        end as customer_tier,
        cast(source.payload ->> 'orders_count' as integer) as orders_count,
        {{ json_timestamp("source.payload ->> 'created_at'") }} as created_at,
        source._updated_at as updated_at,
        -- this version's place in the record's history (macro all_versions): the vendor showed
        -- it from known_at (its update time) until valid_to (the next version's)
        source._updated_at as known_at,
        source._valid_to as valid_to,
        source._version_number as version_number,
        source._version_rank = 1 as is_latest_version,
        -- when this version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at

    from source

)

select * from renamed
