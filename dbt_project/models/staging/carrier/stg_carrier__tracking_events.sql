-- A table, not a view: it reads every tracker version and many tests and models read it.
-- Incremental per TRACKER (delete+insert on tracker_id) on ingestion time: the trackers with a
-- version loaded after max(first_ingested_at) are recomputed from ALL their versions (a scan's
-- first load and first vendor time are minima over every version), the others are kept.
{{
    config(
        materialized='incremental',
        unique_key='tracker_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- Every tracker version carries the full scan history, and late scans can first appear in a
-- later version, so scans come from ALL versions, deduplicated.
with

source as (

    select
        trackers.*,
        min(trackers._updated_at) over (partition by trackers._key) as _first_version_at,
        -- the tracker's first version was read by a live poll (loaded within var
        -- live_poll_max_lag_hours of its vendor update time), not by a backfill that found it
        -- long after its scans happened
        first_value(
            trackers._ingested_at <= {{ dbt.dateadd('hour', var('live_poll_max_lag_hours', 2) | int, 'trackers._updated_at') }}
        ) over (
            partition by trackers._key
            order by trackers._updated_at, trackers._ingested_at, trackers._record_hash
            rows between unbounded preceding and unbounded following
        ) as _first_version_is_live
    from {{ source('raw', 'carrier_trackers') }} as trackers
    {% if is_incremental() %}
    where trackers._key in (
        select _key from {{ source('raw', 'carrier_trackers') }}
        where _ingested_at > {{ ingestion_watermark('first_ingested_at') }}
    )
    {% endif %}

),

scans as (

    select
        source.payload ->> 'id' as tracker_id,
        source._format as source_format,
        case when source._format = 'aftership' then source.payload ->> 'tracking_number'
            else source.payload ->> 'tracking_code' end as tracking_number,
        {{ json_timestamp("scan.value ->> 'datetime'") }} as event_at,
        scan.value ->> 'status' as status,
        scan.value ->> 'status_detail' as status_detail,
        coalesce(scan.value ->> 'message', scan.value ->> 'description') as message,
        scan.value -> 'tracking_location' ->> 'city' as city,
        scan.value -> 'tracking_location' ->> 'state' as state,
        source._updated_at as version_updated_at,
        source._first_version_at,
        source._first_version_is_live,
        source._ingested_at as version_ingested_at
    from source
    {{ json_array_rows("source.payload -> 'tracking_details'", 'scan') }}
    where source._format <> 'aftership'

    union all

    select
        source.payload ->> 'id' as tracker_id,
        source._format as source_format,
        source.payload ->> 'tracking_number' as tracking_number,
        {{ json_timestamp("scan.value ->> 'checkpoint_time'") }} as event_at,
        scan.value ->> 'tag' as status,
        scan.value ->> 'subtag' as status_detail,
        scan.value ->> 'message' as message,
        scan.value ->> 'city' as city,
        scan.value ->> 'state' as state,
        source._updated_at as version_updated_at,
        source._first_version_at,
        source._first_version_is_live,
        source._ingested_at as version_ingested_at
    from source
    {{ json_array_rows("source.payload -> 'checkpoints'", 'scan') }}
    where source._format = 'aftership'

),

deduplicated as (

    select
        tracker_id,
        event_at,
        status,
        status_detail,
        message,
        max(source_format) as source_format,
        max(tracking_number) as tracking_number,
        max(city) as city,
        max(state) as state,
        min(version_updated_at) as first_observed_at,
        min(_first_version_at) as tracker_first_version_at,
        bool_or(_first_version_is_live) as tracker_first_version_is_live,
        -- the load that first carried this scan (late scans arrive in later versions)
        min(version_ingested_at) as first_ingested_at
    from scans
    where event_at is not null
    group by tracker_id, event_at, status, status_detail, message

),

renamed as (

    select
        {{ dbt.hash(dbt.concat([
            "tracker_id", "'|'",
            "cast(event_at as " ~ dbt.type_string() ~ ")", "'|'",
            "coalesce(status, '<null>')", "'|'",
            "coalesce(status_detail, '<null>')", "'|'",
            "coalesce(message, '<null>')"
        ])) }} as event_id,
        tracker_id,
        tracking_number,
        event_at,
        status,
        status_detail,
        {{ canonical_carrier_status('deduplicated.source_format', 'deduplicated.status', 'deduplicated.status_detail') }}
            as canonical_status,
        message,
        source_format,
        city,
        state,
        first_observed_at,
        -- known_at (docs/architecture.md "Which field is known when"): a scan is known from
        -- the update time of the first tracker version that shows it (its own time if later:
        -- a version cannot show a scan before it happened). One exception: a scan already in
        -- the tracker's first version when that version came from a backfill (loaded long
        -- after its update time, e.g. the merchant's first ingest from the list endpoint)
        -- counts from its own time, since that version's update time is the tracker's latest
        -- change and would make every earlier scan unknown until then.
        case
            when first_observed_at <= tracker_first_version_at
                and not tracker_first_version_is_live then event_at
            when first_observed_at > event_at then first_observed_at
            else event_at
        end as known_at,
        first_ingested_at

    from deduplicated

)

select * from renamed
