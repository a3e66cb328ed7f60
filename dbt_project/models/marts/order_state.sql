-- One row per order as of "now" (var as_of, else the current timestamp): the as-of layer
-- (macros/as_of.sql) evaluated at the single moment now, so the live table and
-- order_state_snapshots share one definition. Column meanings: _marts__models.yml.

{{ order_state_as_of('select ' ~ orderwatch_as_of() ~ ' as as_of') }}
