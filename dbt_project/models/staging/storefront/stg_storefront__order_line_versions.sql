-- Every version of every order's line items: the as-of layer reads the lines of the order
-- version valid at a moment (an edit adds lines; an edit, refund or return lowers
-- `current_quantity` later).
-- A table, not a view: the as-of layer joins it at every moment of its grid.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'storefront_orders')) }}

),

renamed as (

    select
        cast(line.value ->> 'id' as bigint) as order_line_id,
        cast(source.payload ->> 'id' as bigint) as order_id,
        line.value ->> 'sku' as sku,
        cast(line.value ->> 'product_id' as bigint) as product_id,
        cast(line.value ->> 'variant_id' as bigint) as variant_id,
        line.value ->> 'title' as title,
        -- Shopify keeps the ordered `quantity` through an order edit and sets
        -- `current_quantity` (REST 2024-01 on) to it minus the units removed since (by an
        -- edit, a refund or a return)
        cast(line.value ->> 'quantity' as integer) as quantity,
        coalesce(
            cast(line.value ->> 'current_quantity' as integer),
            cast(line.value ->> 'quantity' as integer)
        ) as current_quantity,
        cast(line.value ->> 'price' as numeric(18, 2)) as price,
        line.value ->> 'fulfillment_status' as fulfillment_status,
        -- the order version's place in its history (macro all_versions), as on
        -- stg_storefront__orders
        source._updated_at as known_at,
        source._valid_to as valid_to,
        source._version_number as version_number,
        source._version_rank = 1 as is_latest_version,
        source._ingested_at as ingested_at

    from source
    {{ json_array_rows("source.payload -> 'line_items'", 'line') }}

)

select * from renamed
