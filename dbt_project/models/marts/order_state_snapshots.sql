-- The as-of layer: one row per order x moment of the snapshot grid (int_snapshot_grid), with
-- order_state's columns as they were known at that moment (facts with known_at <= as_of only;
-- macros/as_of.sql). Separate from the live order_state, so replaying a past moment never
-- overwrites it; training sets and backtests read many moments from here in one query.

{{ order_state_as_of('select as_of from ' ~ ref('int_snapshot_grid')) }}
