{#- Status questions without a status tag (docs/feeds.md "support_tickets"): a ticket is a
    status question when it carries a status-like tag, or when its subject or description holds
    a status phrase and none of the look-alike phrases. Look-alikes win: other questions
    (returns, refunds, cancellations, address changes, delivery instructions, damage, billing)
    mention delivery too ("deliver to my work address", "arrived ... broken"), and "where is my
    refund?" is a billing question. Phrases are matched on the lower-cased text, curly
    apostrophes read as straight ones; plain LIKE so DuckDB and PostgreSQL agree. -#}
{% macro support_status_tags() %}{{ return(['wismo', 'order_status', 'where_is_my_order', 'shipping_status', 'delivery_status']) }}{% endmacro %}
{% macro support_status_phrases() %}{{ return([
    'where is my', "where's my", 'wheres my', 'where is it', 'where is the parcel',
    "hasn't arrived", 'has not arrived', 'not arrived', "hasn't come", 'not received',
    "haven't received", 'have not received', 'never received', 'not been delivered',
    'still waiting', 'still no sign', 'still not here', 'when will', 'has it shipped',
    'has my order shipped', 'shipped yet', 'tracking', 'order status', 'delivery status',
    'shipping status', 'status of my order', 'any update', 'any news', 'arrive in time',
    'parcel lost', 'package lost', 'lost in the mail', 'not updated', 'has not updated'
]) }}{% endmacro %}
{% macro support_lookalike_phrases() %}{{ return([
    'return', 'refund', 'cancel', 'exchange', 'change the size', 'wrong size', 'charged',
    'discount', 'coupon', 'invoice', 'deliver to', 'change my address', 'change the address',
    'delivery address', 'leave the parcel', 'leave it with', 'neighbour', 'neighbor',
    'damaged', 'broken', 'crushed', 'wrong item', 'missing item'
]) }}{% endmacro %}

{% macro _any_phrase(text_expr, phrases) -%}
    ({%- for phrase in phrases %}{{ text_expr }} like '%{{ phrase | replace("'", "''") }}%'{% if not loop.last %} or {% endif %}{% endfor -%})
{%- endmacro %}

{% macro support_status_text(subject_expr, description_expr) -%}
    replace(lower(coalesce({{ subject_expr }}, '') || ' ' || coalesce({{ description_expr }}, '')), '’', '''')
{%- endmacro %}

{#- true when the ticket's text (subject + description) asks for an order's status -#}
{% macro support_text_asks_status(subject_expr, description_expr) -%}
    {%- set text = support_status_text(subject_expr, description_expr) -%}
    ({{ _any_phrase(text, support_status_phrases()) }} and not {{ _any_phrase(text, support_lookalike_phrases()) }})
{%- endmacro %}

{#- true when one of the ticket's tags is a status tag (tags: a JSON array of strings) -#}
{% macro support_status_tagged(tags_json_expr) -%}
    ({%- for tag in support_status_tags() %}{{ json_array_contains_text(tags_json_expr, "'" ~ tag ~ "'") }}{% if not loop.last %} or {% endif %}{% endfor -%})
{%- endmacro %}
