-- A table, not a view: every version is kept and the as-of layer joins it many times.
{{ config(materialized='table') }}

with

source as (

    {{ all_versions(source('raw', 'support_tickets')) }}

),

-- custom field 360012345678 ("Order number") holds the order number when external_id is empty
order_number_field as (

    select
        source._key,
        source._record_hash,
        max(nullif(trim(custom_field.value ->> 'value'), '')) as order_number
    from source
    {{ json_array_rows("source.payload -> 'custom_fields'", 'custom_field') }}
    where custom_field.value ->> 'id' = '360012345678'
    group by source._key, source._record_hash

),

renamed as (

    select
        cast(source.payload ->> 'id' as bigint) as ticket_id,
        '#' || ltrim(
            coalesce(nullif(trim(source.payload ->> 'external_id'), ''), order_number_field.order_number),
            '#'
        ) as order_name,
        source.payload ->> 'subject' as subject,
        source.payload ->> 'status' as status,
        source.payload ->> 'priority' as priority,
        source.payload ->> 'type' as ticket_type,
        {{ json_array_contains_text("source.payload -> 'tags'", "'wismo'") }} as is_wismo,
        -- a status question: a status-like tag, or the keyword rule of macros/support.sql
        -- (untagged questions; look-alikes excluded)
        (
            {{ support_status_tagged("source.payload -> 'tags'") }}
            or {{ support_text_asks_status("source.payload ->> 'subject'", "source.payload ->> 'description'") }}
        ) as is_status_question,
        cast(source.payload ->> 'requester_id' as bigint) as requester_id,
        -- the agent who has the ticket (none while it is new and unassigned)
        cast(source.payload ->> 'assignee_id' as bigint) as assignee_id,
        -- the address an e-mail ticket came from: the requester's e-mail when the users
        -- sideload lacks the requester
        lower(trim(source.payload -> 'via' -> 'source' -> 'from' ->> 'address')) as via_email,
        source.payload -> 'via' ->> 'channel' as channel,
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
    left join order_number_field
        on source._key = order_number_field._key and source._record_hash = order_number_field._record_hash

)

select * from renamed
