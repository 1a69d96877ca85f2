"""The HTTP request and response schema of /rank and /rank_batch (pydantic, part of the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from bento.config import MAX_CANDIDATES


def to_utc(value: dt.datetime) -> dt.datetime:
    """The same instant in UTC (naive means UTC); ValueError when it has no UTC date in years 1-9999."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise ValueError(f"{value.isoformat()} lies outside years 1-9999 once converted to UTC") from None


# validated while the request is parsed: a bad time is the sender's 400 and never enters a batch
EventTime = Annotated[dt.datetime, AfterValidator(to_utc)]

RequestId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the caller's id of this request (1-128 of A-Za-z0-9._:-); generated when absent",
    ),
]
Id = Annotated[StrictInt, Field(ge=0, le=2**63 - 1, description="a non-negative int64 id")]
Candidates = Annotated[
    list[Id], Field(min_length=1, max_length=MAX_CANDIDATES, description="candidate item ids to rank")
]


class RankRequest(BaseModel):
    """One ranking query: a user and the candidate items to order for them."""

    user_id: Id
    item_ids: Candidates
    event_time: EventTime | None = Field(
        default=None, description="request time (ISO 8601, UTC when naive); default: now"
    )
    request_id: RequestId | None = None


class RankedItem(BaseModel):
    """One scored candidate."""

    item_id: int
    score: float


class RankResponse(BaseModel):
    """Candidates sorted best first, with the model that scored them."""

    request_id: str = Field(description="the request's id (the caller's, or generated: uuid4 hex)")
    user_id: int
    domain: str
    model: str = Field(description="model store tag, dacdr-<domain>:<version>")
    arm: str = Field(description="the A/B arm that answered ('production' without an experiment)")
    experiment_id: str | None = Field(description="the domain's running experiment, null without one")
    cold_start: bool = Field(description="the user has no source-domain history in the online store")
    ranked: list[RankedItem]
