-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'wms_shipments')) }}

),

renamed as (

    select
        cast(shipment.value ->> 'id' as bigint) as shipment_id,
        cast(source.payload ->> 'id' as bigint) as wms_order_id,
        {{ text_to_bigint("(source.payload ->> 'reference_id')") }} as order_id,
        source.payload ->> 'order_number' as order_number,
        source.payload ->> 'status' as wms_order_status,
        shipment.value -> 'location' ->> 'name' as warehouse_name,
        cast(shipment.value -> 'location' ->> 'id' as bigint) as warehouse_id,
        shipment.value ->> 'status' as status,
        shipment.value -> 'status_details' -> 0 ->> 'name' as status_detail,
        shipment.value -> 'tracking' ->> 'tracking_number' as tracking_number,
        shipment.value -> 'tracking' ->> 'carrier' as carrier,
        shipment.value -> 'tracking' ->> 'carrier_service' as carrier_service,
        {{ json_timestamp("shipment.value -> 'tracking' ->> 'shipping_date'") }} as shipping_date,
        {{ json_timestamp("shipment.value ->> 'estimated_fulfillment_date'") }} as estimated_fulfillment_date,
        shipment.value ->> 'estimated_fulfillment_date_status' as estimated_fulfillment_date_status,
        {{ json_timestamp("shipment.value ->> 'actual_fulfillment_date'") }} as actual_fulfillment_date,
        {{ json_timestamp("shipment.value ->> 'created_date'") }} as created_at,
        {{ json_timestamp("shipment.value ->> 'last_update_at'") }} as last_update_at,
        {{ json_timestamp("shipment.value ->> 'last_tracking_update_at'") }} as last_tracking_update_at,
        {{ json_timestamp("source.payload ->> 'created_date'") }} as released_at,
        -- when this version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at,
        -- a shipment's state is known from its own last_update_at (the version's time for it)
        coalesce(
            {{ json_timestamp("shipment.value ->> 'last_update_at'") }},
            {{ json_timestamp("shipment.value ->> 'created_date'") }},
            source._updated_at
        ) as known_at,
        source._updated_at as version_updated_at,
        source._record_hash as version_hash,
        source._version_rank = 1 as is_latest_version

    from source
    {{ json_array_rows("source.payload -> 'shipments'", 'shipment') }}

),

-- one ShipBob order version repeats every shipment: a shipment's state is valid from its
-- known_at until the next version of that shipment
final as (

    select
        renamed.*,
        row_number() over (
            partition by shipment_id
            order by known_at, version_updated_at, ingested_at, version_hash
        ) as version_number,
        lead(known_at) over (
            partition by shipment_id
            order by known_at, version_updated_at, ingested_at, version_hash
        ) as valid_to
    from renamed

)

select * from final
