with

source as (

    {{ latest_versions(source('raw', 'storefront_customers')) }}

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
        -- when this (latest) version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at

    from source

)

select * from renamed
