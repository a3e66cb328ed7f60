-- Zendesk users as the ticket pages sideload them (`include=users`, feed support_users): the
-- requesters, so a ticket that names no order can be linked by its requester's e-mail.
with

source as (

    {{ all_versions(source('raw', 'support_users')) }}

),

renamed as (

    select
        cast(source.payload ->> 'id' as bigint) as user_id,
        -- e-mail addresses compare case-insensitively (Shopify and Zendesk both store as typed)
        lower(trim(source.payload ->> 'email')) as email,
        source.payload ->> 'name' as user_name,
        source.payload ->> 'role' as user_role,
        {{ json_timestamp("source.payload ->> 'created_at'") }} as created_at,
        source._updated_at as updated_at,
        source._updated_at as known_at,
        source._valid_to as valid_to,
        source._version_rank = 1 as is_latest_version,
        source._ingested_at as ingested_at

    from source

)

select * from renamed
