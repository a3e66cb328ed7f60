-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'returns')) }}

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
