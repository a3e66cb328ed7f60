with

source as (

    {{ latest_versions(source('raw', 'storefront_orders')) }}

),

renamed as (

    select
        cast(fulfillment.value ->> 'id' as bigint) as fulfillment_id,
        cast(source.payload ->> 'id' as bigint) as order_id,
        fulfillment.value ->> 'status' as status,
        fulfillment.value ->> 'shipment_status' as shipment_status,
        fulfillment.value ->> 'tracking_company' as tracking_company,
        coalesce(
            fulfillment.value ->> 'tracking_number',
            fulfillment.value -> 'tracking_numbers' ->> 0
        ) as tracking_number,
        {{ json_timestamp("fulfillment.value ->> 'created_at'") }} as created_at,
        {{ json_timestamp("fulfillment.value ->> 'updated_at'") }} as updated_at,
        -- when this (latest) version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at

    from source
    {{ json_array_rows("source.payload -> 'fulfillments'", 'fulfillment') }}

)

select * from renamed
