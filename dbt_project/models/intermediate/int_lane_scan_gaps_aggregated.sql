-- One row per lane x day (shop calendar): the threshold the scan_gap rule uses for a gap (or a
-- silence) that starts on that day, from a trailing window strictly before the day: the
-- var scan_gap_percentile of the lane's gaps as the scans known before the day's start showed
-- them (both scans known, no scan between them known yet: int_lane_scan_gaps_measured's
-- gap_known_at / gap_valid_to, so a late scan known later never rewrites this day's threshold)
-- whose closing scan is within var scan_gap_window_days before it, floored at var
-- scan_gap_floor_hours, in business hours (int_lane_scan_gaps_measured.gap_business_hours).
-- Lanes with fewer than 20 gaps in the window fall back to the all-lanes percentile (lane '*'),
-- so a gap never sets its own threshold and nothing after it counts.
{%- set shop_tz = "'" ~ var('shop_time_zone') ~ "'" %}

with

gaps as (
    select * from {{ ref('int_lane_scan_gaps_measured') }}
),

calendar as (
    select * from {{ ref('int_business_days_enumerated') }}
),

bounds as (
    select
        min({{ shop_local_date('previous_scan_at') }}) as first_date,
        max({{ shop_local_date('scan_at') }}) as last_date
    from gaps
),

days as (
    select
        calendar.calendar_date as threshold_date,
        (cast(calendar.calendar_date as timestamp) at time zone {{ shop_tz }}) as day_start
    from calendar
    cross join bounds
    where calendar.calendar_date >= bounds.first_date
        and calendar.calendar_date
        <= {{ dbt.dateadd('day', var('scan_gap_window_days'), 'bounds.last_date') }}
),

windowed as (
    select days.threshold_date, gaps.lane, gaps.gap_business_hours
    from days
    inner join gaps
        on gaps.gap_known_at < days.day_start
        and (gaps.gap_valid_to is null or gaps.gap_valid_to >= days.day_start)
        and gaps.scan_at >= days.day_start - interval '{{ var("scan_gap_window_days") }} days'
),

per_lane as (
    select
        threshold_date,
        lane,
        count(*) as gap_count,
        percentile_cont({{ var('scan_gap_percentile') }}) within group (order by gap_business_hours)
            as percentile_gap_hours,
        max(gap_business_hours) as max_gap_hours
    from windowed
    group by threshold_date, lane
),

overall as (
    select
        days.threshold_date,
        cast('*' as varchar) as lane,
        count(windowed.gap_business_hours) as gap_count,
        percentile_cont({{ var('scan_gap_percentile') }}) within group (
            order by windowed.gap_business_hours
        ) as percentile_gap_hours,
        max(windowed.gap_business_hours) as max_gap_hours
    from days
    left join windowed on days.threshold_date = windowed.threshold_date
    group by days.threshold_date
),

lanes as (
    select * from per_lane
    union all
    select * from overall
)

select
    lanes.threshold_date,
    lanes.lane,
    lanes.gap_count,
    lanes.percentile_gap_hours,
    lanes.max_gap_hours,
    case
        when lanes.lane <> '*' and lanes.gap_count < 20 then overall.percentile_gap_hours
        else lanes.percentile_gap_hours
    end as reference_gap_hours,
    greatest(
        coalesce(
            case
                when lanes.lane <> '*' and lanes.gap_count < 20 then overall.percentile_gap_hours
                else lanes.percentile_gap_hours
            end,
            0
        ),
        {{ var('scan_gap_floor_hours') }}
    ) as threshold_hours
from lanes
inner join overall on lanes.threshold_date = overall.threshold_date
