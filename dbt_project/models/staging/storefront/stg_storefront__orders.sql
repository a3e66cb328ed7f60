-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'storefront_orders')) }}

),

-- note_attributes is a [{name, value}] list; the promise is the entry named promised_delivery_date
promised as (

    select
        source._key,
        source._record_hash,
        max(note.value ->> 'value') as promised_delivery_date_text
    from source
    {{ json_array_rows("source.payload -> 'note_attributes'", 'note') }}
    where note.value ->> 'name' = 'promised_delivery_date'
    group by source._key, source._record_hash

),

renamed as (

    select
        cast(source.payload ->> 'id' as bigint) as order_id,
        source.payload ->> 'name' as order_name,
        ltrim(source.payload ->> 'name', '#') as order_number,
        cast(source.payload -> 'customer' ->> 'id' as bigint) as customer_id,
        source.payload -> 'customer' ->> 'tags' as customer_tags,
        coalesce(source.payload ->> 'email', source.payload -> 'customer' ->> 'email') as email,

        {{ json_timestamp("source.payload ->> 'created_at'") }} as placed_at,
        {{ json_timestamp("source.payload ->> 'processed_at'") }} as processed_at,
        -- Shopify keeps the capture time in transactions, not on the order (processed_at is the
        -- checkout): the update time of the order's first version showing it paid
        -- (docs/feeds.md "storefront_orders"); a window over the record's own versions
        case
            when source.payload ->> 'financial_status' in ('paid', 'partially_refunded', 'refunded')
                then min(
                    case
                        when source.payload ->> 'financial_status'
                            in ('paid', 'partially_refunded', 'refunded')
                            then source._updated_at
                    end
                ) over (partition by source._key)
        end as payment_captured_at,
        source._updated_at as updated_at,
        -- this version's place in the record's history (macro all_versions): the vendor showed
        -- it from known_at (its update time) until valid_to (the next version's)
        source._updated_at as known_at,
        source._valid_to as valid_to,
        source._version_number as version_number,
        source._version_rank = 1 as is_latest_version,
        -- when this version was loaded: the incremental watermark downstream
        source._ingested_at as ingested_at,
        {{ json_timestamp("source.payload ->> 'cancelled_at'") }} as cancelled_at,
        source.payload ->> 'cancel_reason' as cancel_reason,
        (source.payload ->> 'cancelled_at') is not null as is_cancelled,

        source.payload ->> 'financial_status' as financial_status,
        source.payload ->> 'fulfillment_status' as fulfillment_status,
        cast(source.payload ->> 'total_price' as numeric(18, 2)) as total_price,
        source.payload ->> 'currency' as currency,

        lower(source.payload -> 'shipping_lines' -> 0 ->> 'code') as service_code,
        upper(source.payload -> 'shipping_address' ->> 'province_code') as destination_province_code,
        upper(source.payload -> 'shipping_address' ->> 'country_code') as destination_country_code,
        source.payload -> 'shipping_address' ->> 'zip' as destination_zip,
        cast(nullif(promised.promised_delivery_date_text, '') as date) as promised_delivery_date

    from source
    left join promised
        on source._key = promised._key and source._record_hash = promised._record_hash

)

select * from renamed
