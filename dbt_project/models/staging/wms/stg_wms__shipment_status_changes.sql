-- A table, not a view: it reads every ShipBob order version and many tests and models read it.
-- Incremental per ShipBob ORDER on ingestion time: the orders with a version loaded after
-- max(last_ingested_at) are recomputed from ALL their versions and replace their shipments'
-- rows (delete+insert on shipment_id); a retried webhook with an old vendor time is new here.
{{
    config(
        materialized='incremental',
        unique_key='shipment_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- ShipBob shipments carry no history: every raw version is one observed state, so the
-- timeline is the distinct (shipment, status, detail, last_update_at) across ALL versions.
with

source as (

    select * from {{ source('raw', 'wms_shipments') }}
    {% if is_incremental() %}
    where _key in (
        select _key from {{ source('raw', 'wms_shipments') }}
        where _ingested_at > {{ ingestion_watermark('last_ingested_at') }}
    )
    {% endif %}

),

observed as (

    select
        cast(shipment.value ->> 'id' as bigint) as shipment_id,
        cast(source.payload ->> 'id' as bigint) as wms_order_id,
        {{ text_to_bigint("(source.payload ->> 'reference_id')") }} as order_id,
        shipment.value -> 'location' ->> 'name' as warehouse_name,
        shipment.value ->> 'status' as status,
        shipment.value -> 'status_details' -> 0 ->> 'name' as status_detail,
        shipment.value -> 'tracking' ->> 'tracking_number' as tracking_number,
        coalesce(
            {{ json_timestamp("shipment.value ->> 'last_update_at'") }},
            {{ json_timestamp("shipment.value ->> 'created_date'") }},
            source._updated_at
        ) as observed_at,
        source._ingested_at

    from source
    {{ json_array_rows("source.payload -> 'shipments'", 'shipment') }}

),

renamed as (

    select
        {{ dbt.hash(dbt.concat([
            "cast(shipment_id as " ~ dbt.type_string() ~ ")", "'|'",
            "coalesce(status, '<null>')", "'|'",
            "coalesce(status_detail, '<null>')", "'|'",
            "cast(observed_at as " ~ dbt.type_string() ~ ")"
        ])) }} as status_change_id,
        shipment_id,
        -- a later version may add the tracking number to the same state: keep one row
        max(wms_order_id) as wms_order_id,
        max(order_id) as order_id,
        max(warehouse_name) as warehouse_name,
        status,
        status_detail,
        max(tracking_number) as tracking_number,
        observed_at,
        -- a ShipBob state is known from its own time (the shipment's last_update_at)
        observed_at as known_at,
        -- the load that first carried this state (a retried webhook can bring an old state late)
        min(_ingested_at) as first_ingested_at,
        -- the latest load that carried it: every new ShipBob version carries each shipment's
        -- current state, so this finds every order with a new version without reading JSON
        max(_ingested_at) as last_ingested_at

    from observed
    group by shipment_id, status, status_detail, observed_at

)

select * from renamed
