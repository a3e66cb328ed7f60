-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'oms_fulfillment_orders')) }}

),

holds as (

    select
        source._key,
        source._record_hash,
        count(*) as hold_count,
        -- the first hold in the vendor's list is the one that stopped the order
        min(case when hold.ordinal = 1 then hold.value ->> 'reason' end) as hold_reason,
        min(case when hold.ordinal = 1 then hold.value ->> 'reason_notes' end) as hold_reason_notes
    from source
    {{ json_array_rows("source.payload -> 'fulfillment_holds'", 'hold') }}
    group by source._key, source._record_hash

),

renamed as (

    select
        cast(source.payload ->> 'id' as bigint) as fulfillment_order_id,
        cast(source.payload ->> 'order_id' as bigint) as order_id,
        source.payload ->> 'status' as status,
        source.payload ->> 'request_status' as request_status,
        source.payload -> 'assigned_location' ->> 'name' as warehouse_name,
        cast(source.payload ->> 'assigned_location_id' as bigint) as assigned_location_id,
        {{ json_timestamp("source.payload ->> 'fulfill_at'") }} as fulfill_at,
        {{ json_timestamp("source.payload ->> 'fulfill_by'") }} as fulfill_by,
        holds.hold_reason,
        holds.hold_reason_notes,
        case
            when holds.hold_reason is null then null
            when holds.hold_reason = 'inventory_out_of_stock' then 'inventory'
            when holds.hold_reason = 'incorrect_address' then 'address'
            else 'other'
        end as hold_reason_category,
        cast(coalesce(holds.hold_count, 0) as integer) as hold_count,
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
    left join holds
        on source._key = holds._key and source._record_hash = holds._record_hash

)

select * from renamed
