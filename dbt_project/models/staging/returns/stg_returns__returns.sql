with

source as (

    {{ latest_versions(source('raw', 'returns')) }}

),

renamed as (

    select
        cast(source.payload ->> 'id' as bigint) as return_id,
        -- Loop's `order_id` is Loop's own; the storefront order is `provider_order_id`
        {{ text_to_bigint("(source.payload ->> 'provider_order_id')") }} as order_id,
        source.payload ->> 'order_name' as order_name,
        source.payload ->> 'state' as state,
        source.payload ->> 'outcome' as outcome,
        coalesce(source.payload ->> 'outcome' = 'return_to_sender', false) as is_return_to_sender,
        source.payload ->> 'tracking_number' as tracking_number,
        source.payload ->> 'carrier' as carrier,
        cast(source.payload ->> 'total' as numeric(18, 2)) as total,
        {{ json_timestamp("source.payload ->> 'created_at'") }} as created_at,
        source._updated_at as updated_at,
        -- when this (latest) version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at

    from source

)

select * from renamed
