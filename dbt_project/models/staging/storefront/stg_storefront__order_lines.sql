with

source as (

    {{ latest_versions(source('raw', 'storefront_orders')) }}

),

renamed as (

    select
        cast(line.value ->> 'id' as bigint) as order_line_id,
        cast(source.payload ->> 'id' as bigint) as order_id,
        line.value ->> 'sku' as sku,
        cast(line.value ->> 'product_id' as bigint) as product_id,
        cast(line.value ->> 'variant_id' as bigint) as variant_id,
        line.value ->> 'title' as title,
        cast(line.value ->> 'quantity' as integer) as quantity,
        cast(line.value ->> 'price' as numeric(18, 2)) as price,
        line.value ->> 'fulfillment_status' as fulfillment_status,
        -- when this (latest) version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at

    from source
    {{ json_array_rows("source.payload -> 'line_items'", 'line') }}

)

select * from renamed
