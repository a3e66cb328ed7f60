-- The merchant's business-day calendar: weekends and seed merchant_holidays are not business
-- days. The running business_day_index turns "+ N business days" into an index lookup.
-- Carrier days (is_carrier_day, carrier_day_index) are the days carriers scan: Monday to
-- Saturday except the merchant's holidays; scan-gap clocks count them.
with

spine as (

    {{ dbt.date_spine(
        'day',
        "cast('" ~ var('calendar_start') ~ "' as date)",
        dbt.dateadd('day', 1, "cast('" ~ var('calendar_end') ~ "' as date)")
    ) }}

),

holidays as (

    select
        holiday_date,
        min(holiday_name) as holiday_name
    from {{ ref('merchant_holidays') }}
    group by holiday_date

),

flagged as (

    select
        cast(spine.date_day as date) as calendar_date,
        cast(extract(dow from spine.date_day) as integer) as day_of_week,
        holidays.holiday_name
    from spine
    left join holidays on cast(spine.date_day as date) = holidays.holiday_date

),

classified as (

    select
        calendar_date,
        day_of_week,
        day_of_week in (0, 6) as is_weekend,
        holiday_name is not null as is_holiday,
        holiday_name,
        day_of_week not in (0, 6) and holiday_name is null as is_business_day,
        day_of_week <> 0 and holiday_name is null as is_carrier_day
    from flagged

),

indexed as (

    select
        classified.*,
        cast(sum(case when is_business_day then 1 else 0 end) over (
            order by calendar_date rows between unbounded preceding and current row
        ) as integer) as business_day_index,
        cast(sum(case when is_carrier_day then 1 else 0 end) over (
            order by calendar_date rows between unbounded preceding and current row
        ) as integer) as carrier_day_index
    from classified

)

select
    calendar_date,
    day_of_week,
    is_weekend,
    is_holiday,
    holiday_name,
    is_business_day,
    business_day_index,
    -- the first business day on/after this date: itself, else the next index
    case when is_business_day then business_day_index else business_day_index + 1 end
        as next_business_day_index,
    is_carrier_day,
    carrier_day_index
from indexed
