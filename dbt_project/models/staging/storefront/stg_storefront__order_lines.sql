-- The line items of each order's latest version (packets, failure modes); the as-of layer
-- reads every version's (stg_storefront__order_line_versions).
select
    order_line_id,
    order_id,
    sku,
    product_id,
    variant_id,
    title,
    quantity,
    price,
    fulfillment_status,
    -- when this (latest) version was loaded: the incremental watermark downstream
    ingested_at
from {{ ref('stg_storefront__order_line_versions') }}
where is_latest_version
