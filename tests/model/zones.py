"""Contract-valid landing zones with a poor source domain, built by rewriting a simulated zone's behaviours.

rate_only: the source domain's browses become `rate` behaviours with a star value (5 when the user
clicked the item that day, else 2) and its task becomes `rating`, as in a MovieLens-style zone; the
other source behaviours go. browse_only: only the source browses stay (no clicks: no source positives).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import contract as C

KINDS: tuple[str, ...] = ("rate_only", "browse_only")


def _rewrite(beh: pa.Table, source: str, kind: str) -> pa.Table:
    """One behaviours partition with the source domain's rows rewritten (other domains untouched)."""
    is_src = pc.equal(beh[C.DOMAIN], source)
    rest = beh.filter(pc.invert(is_src))
    src = beh.filter(is_src)
    browse = src.filter(pc.equal(src[C.BEHAVIOR], "browse"))
    if kind == "browse_only":
        return pa.concat_tables([rest, browse])
    clicks = src.filter(pc.equal(src[C.BEHAVIOR], "click"))
    # a partition is one day, so "clicked that day" is a (user, item) key match within it
    key = lambda t: pc.add(pc.multiply(t[C.USER_ID], 10_000_000), t[C.ITEM_ID])  # noqa: E731
    clicked = pc.is_in(key(browse), value_set=key(clicks).combine_chunks()).to_numpy(zero_copy_only=False)
    n = browse.num_rows
    rated = browse.set_column(
        browse.schema.get_field_index(C.BEHAVIOR), C.BEHAVIOR, pa.array(np.full(n, "rate", dtype=object))
    ).set_column(browse.schema.get_field_index(C.VALUE), C.VALUE, pa.array(np.where(clicked, 5.0, 2.0)))
    return pa.concat_tables([rest, rated.cast(beh.schema)])


def poor_source_zone(logs: Path, out: Path, kind: str) -> Path:
    """A copy of landing zone `logs` at `out` whose source domain has only `rate` or only `browse` rows."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    shutil.copytree(logs, out)
    dom_path = next((out / C.DOMAINS).glob("*.parquet"))
    domains = pq.read_table(dom_path)
    source = domains.filter(pc.equal(domains[C.ROLE], C.ROLE_SOURCE))[C.DOMAIN][0].as_py()
    for path in sorted((out / C.BEHAVIORS).rglob("*.parquet")):
        pq.write_table(_rewrite(pq.read_table(path), source, kind), path)
    if kind == "rate_only":
        task = np.where(domains[C.ROLE].to_numpy(zero_copy_only=False) == C.ROLE_SOURCE, C.TASK_RATING,
                        domains[C.TASK].to_numpy(zero_copy_only=False))
        domains = domains.set_column(domains.schema.get_field_index(C.TASK), C.TASK,
                                     pa.array(task.astype(object), pa.string()))
        pq.write_table(domains, dom_path)
    return out
