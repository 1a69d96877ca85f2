"""Feast entities: user, item and domain, keyed by the log contract's id columns."""

from __future__ import annotations

from feast import Entity, ValueType

from features import contract as C

user = Entity(
    name="user",
    join_keys=[C.USER_ID],
    value_type=ValueType.INT64,
    description="A user of any domain (ids are shared across domains).",
)
item = Entity(
    name="item",
    join_keys=[C.ITEM_ID],
    value_type=ValueType.INT64,
    description="An item of the shared item pool.",
)
domain = Entity(
    name="domain",
    join_keys=[C.DOMAIN],
    value_type=ValueType.STRING,
    description="A business domain (source or target) from the domains table.",
)

ENTITIES: tuple[Entity, ...] = (user, item, domain)
