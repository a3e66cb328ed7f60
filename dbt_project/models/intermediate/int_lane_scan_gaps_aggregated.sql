-- One row per lane: its scan-gap distribution and the threshold the scan_gap rule uses,
-- max(percentile var scan_gap_percentile of the lane's gaps, var scan_gap_floor_hours), in
-- business hours (int_lane_scan_gaps_measured.gap_business_hours).
-- Lanes with fewer than 20 gaps fall back to the all-lanes percentile (lane '*').

with

gaps as (
    select * from {{ ref('int_lane_scan_gaps_measured') }}
),

per_lane as (
    select
        lane,
        count(*) as gap_count,
        percentile_cont({{ var('scan_gap_percentile') }}) within group (order by gap_business_hours)
            as percentile_gap_hours,
        max(gap_business_hours) as max_gap_hours
    from gaps
    group by lane
),

overall as (
    select
        cast('*' as varchar) as lane,
        count(*) as gap_count,
        percentile_cont({{ var('scan_gap_percentile') }}) within group (order by gap_business_hours)
            as percentile_gap_hours,
        max(gap_business_hours) as max_gap_hours
    from gaps
),

lanes as (
    select * from per_lane
    union all
    select * from overall
)

select
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
cross join overall
