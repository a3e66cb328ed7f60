-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'carrier_trackers')) }}

),

-- EasyPost Tracker and AfterShip tracking land in one feed; `_format` says which shape.
unified as (

    select
        source.payload ->> 'id' as tracker_id,
        source._format as source_format,
        case when source._format = 'aftership' then source.payload ->> 'tracking_number'
            else source.payload ->> 'tracking_code' end as tracking_number,
        case when source._format = 'aftership' then source.payload ->> 'slug'
            else source.payload ->> 'carrier' end as carrier,
        case when source._format = 'aftership' then source.payload ->> 'tag'
            else source.payload ->> 'status' end as status,
        case when source._format = 'aftership' then source.payload ->> 'subtag'
            else source.payload ->> 'status_detail' end as status_detail,
        case when source._format = 'aftership' then source.payload ->> 'expected_delivery'
            else source.payload ->> 'est_delivery_date' end as est_delivery_date_text,
        source.payload ->> 'shipment_id' as shipment_id,
        source.payload ->> 'signed_by' as signed_by,
        case when source._format = 'aftership' then source.payload ->> 'return_to_sender'
            else source.payload ->> 'is_return' end as is_return_text,
        -- the carrier's public tracking page (EasyPost `public_url`, AfterShip
        -- `courier_tracking_link`): the link a customer may be sent
        case when source._format = 'aftership' then source.payload ->> 'courier_tracking_link'
            else source.payload ->> 'public_url' end as public_url,
        source.payload ->> 'created_at' as created_at_text,
        source._updated_at as updated_at,
        source._ingested_at as ingested_at,
        source._valid_to as valid_to,
        source._version_number as version_number,
        source._version_rank = 1 as is_latest_version

    from source

),

renamed as (

    select
        tracker_id,
        tracking_number,
        carrier,
        status,
        status_detail,
        {{ canonical_carrier_status('unified.source_format', 'unified.status', 'unified.status_detail') }}
            as canonical_status,
        {{ json_timestamp('est_delivery_date_text') }} as est_delivery_date,
        shipment_id,
        signed_by,
        public_url,
        coalesce(lower(is_return_text) = 'true', false) as is_return,
        source_format,
        {{ json_timestamp('created_at_text') }} as created_at,
        updated_at,
        ingested_at,
        -- this version's place in the tracker's history (macro all_versions): status and the
        -- estimated delivery date are known from its update time until the next version's
        updated_at as known_at,
        valid_to,
        version_number,
        is_latest_version

    from unified

)

select * from renamed
