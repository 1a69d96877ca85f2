"""Source-domain rows in the training-table layout, and what signal a zone's source domain holds."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C

log = logging.getLogger(__name__)


def source_domain_of(logs: Path) -> tuple[str, str]:
    """(name, task) of the zone's one source domain; ValueError when there is not exactly one."""
    from features.dataset import read_domains

    domains = read_domains(logs).to_pandas()
    src = domains[domains[C.ROLE] == C.ROLE_SOURCE]
    if len(src) != 1:
        raise ValueError(f"{logs}: expected exactly one source domain, found {src[C.DOMAIN].tolist()}")
    return str(src[C.DOMAIN].iloc[0]), str(src[C.TASK].iloc[0])




SOURCE_NEGATIVES = 4  # sampled negatives per implicit source click (as the importer's default for targets)


def implicit_examples(clicks: pd.DataFrame, negatives: int = SOURCE_NEGATIVES, seed: int = 0) -> pd.DataFrame:
    """Each click (label 1) plus `negatives` rows at its time with items drawn uniformly (seeded) from the
    items clicked by anyone by then, never one the user clicked (label 0); columns event_time, user_id,
    item_id, label."""
    from features.interactions import available_pool, sample_negatives

    item = clicks[C.ITEM_ID].to_numpy()
    when = clicks[C.EVENT_TIME].astype("int64").to_numpy()  # only the order matters: any time unit
    pool, avail = available_pool(item, when)
    users = clicks[C.USER_ID].to_numpy().astype(np.int64)
    seen = np.unique(users * np.int64(pool.max() + 1) + item)
    counts = np.full(len(clicks), negatives)
    req, items = sample_negatives(np.random.default_rng(seed), pool, users, counts, seen, avail)
    neg = pd.DataFrame({C.EVENT_TIME: clicks[C.EVENT_TIME].to_numpy()[req], C.USER_ID: users[req],
                        C.ITEM_ID: items, C.LABEL: 0.0})
    return pd.concat([clicks.assign(**{C.LABEL: 1.0}), neg], ignore_index=True)


def source_rows(
    logs: Path, like: pa.Table, before_us: int | None = None, sequences: bool = False
) -> pa.Table:
    """The source domain's interactions as training-table rows (schema of `like`), for the models that
    learn from source examples (CMF, EMCDR, SSCDR, PTUPCDR, DNN-multi, DACDR and the multi-domain models).

    ctr source: every browse is an example, label 1 when the user clicked the same item that day (the
    simulator's browse -> click funnel); a source of clicks without browses (imported implicit data) gives
    each click as a positive and SOURCE_NEGATIVES sampled items as negatives (implicit_examples).
    rating source: every `rate` behaviour, label = its value.
    `sequences=False`: the rows carry empty histories. `sequences=True`: each row carries the user's
    own earlier source history, from the same daily snapshots as target rows (as of the row's time: the
    row's own day is never in it). `before_us` keeps only earlier events. A source without such
    behaviours gives zero rows (logged), not an error.
    """
    from features import io
    from features.dataset import read_domains

    name, task = source_domain_of(logs)
    domains = read_domains(logs).to_pandas()
    src = domains[domains[C.DOMAIN] == name]
    beh = io.read_table(logs, C.BEHAVIORS)
    beh = beh.filter(pc.equal(beh[C.DOMAIN], name))
    if before_us is not None:
        beh = beh.filter(pc.less(pc.cast(beh[C.EVENT_TIME], pa.int64()), before_us))
    df = beh.select([C.EVENT_TIME, C.USER_ID, C.ITEM_ID, C.BEHAVIOR, C.VALUE]).to_pandas()
    if task == C.TASK_CTR:
        df = df.assign(_day=df[C.EVENT_TIME].dt.floor("D"))  # on the frame: assigning a Series to an empty
        # selection would give it the Series' index (rows of NaN)
        clicks = df.loc[df[C.BEHAVIOR] == "click", [C.USER_ID, C.ITEM_ID, "_day"]].drop_duplicates()
        rows = df.loc[df[C.BEHAVIOR] == "browse", [C.EVENT_TIME, C.USER_ID, C.ITEM_ID, "_day"]]
        rows = rows.merge(clicks.assign(_clicked=1.0), on=[C.USER_ID, C.ITEM_ID, "_day"], how="left")
        rows[C.LABEL] = rows["_clicked"].fillna(0.0)
        if rows.empty and len(clicks):  # implicit source (clicks, no browses): clicks + sampled negatives
            click_rows = df.loc[df[C.BEHAVIOR] == "click", [C.EVENT_TIME, C.USER_ID, C.ITEM_ID]]
            rows = implicit_examples(click_rows)
    else:
        rows = df.loc[df[C.BEHAVIOR] == "rate", [C.EVENT_TIME, C.USER_ID, C.ITEM_ID, C.VALUE]]
        if rows[C.VALUE].isna().any():
            raise ValueError(
                f"{logs}: {int(rows[C.VALUE].isna().sum())} source 'rate' behaviours have no value"
            )
        rows = rows.rename(columns={C.VALUE: C.LABEL})
    if rows.empty:
        # a contract-valid zone may hold no source examples (ctr source without browses): the models
        # that learn from them say so in the report and train on the target rows alone
        log.warning("source domain %r has no %s examples: models that learn from source rows get none",
                    name, "browse" if task == C.TASK_CTR else "rated")
    rows = rows.sort_values([C.EVENT_TIME, C.USER_ID, C.ITEM_ID], kind="stable").reset_index(drop=True)
    n = len(rows)
    items = io.read_table(logs, C.ITEMS)
    pos = pc.index_in(pa.array(rows[C.ITEM_ID].to_numpy()), value_set=items[C.ITEM_ID])
    cols: dict[str, pa.Array] = {}
    for f in like.schema:
        c = f.name
        if c == C.EVENT_TIME:
            cols[c] = pa.array(rows[C.EVENT_TIME]).cast(f.type)
        elif c == C.REQUEST_ID:
            cols[c] = pc.binary_join_element_wise(f"{name}-", pa.array(np.arange(n).astype(str)), "")
        elif c == C.DOMAIN:
            cols[c] = pa.array(np.full(n, name, dtype=object), pa.string())
        elif c in (C.USER_ID, C.ITEM_ID, C.LABEL):
            cols[c] = pa.array(rows[c].to_numpy()).cast(f.type)
        elif c in C.SIDE_INFO:
            cols[c] = pc.fill_null(pc.take(items[c], pos), -1).cast(f.type)
        elif c == C.IS_COLD:
            cols[c] = pa.array(np.zeros(n, bool))
        elif c.startswith("seq_"):
            empty = pa.array(np.empty(0, np.int64), f.type.value_type)
            cols[c] = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), empty, type=f.type)
        elif c.startswith(C.DOMAIN_FEATURE_PREFIX):
            feat = c[len(C.DOMAIN_FEATURE_PREFIX) :]
            cols[c] = pa.array(np.full(n, str(src[feat].iloc[0]), dtype=object), pa.string())
        else:
            raise ValueError(f"source_rows: no rule for training-table column {c!r}")
    table = pa.table(cols, schema=like.schema)
    if sequences and n:
        from features.sequences import attach_sequences, sequence_columns, sequence_snapshots

        snaps = sequence_snapshots(beh, items, io.read_table(logs, C.DOMAINS))
        seq = [c for c in like.column_names if c.startswith("seq_")]
        if sorted(seq) != sorted(sequence_columns()):
            raise ValueError(f"source_rows: training table sequence columns {seq} differ from the builder's")
        table = attach_sequences(table.drop_columns(seq), snaps).select(like.column_names).cast(like.schema)
    return table


def zone_signals(spec, target_t: dict, joint_t: dict, source_domain: str) -> dict:
    """What the source domain gives the models: source example rows, their positives (label > 0),
    users with both source and target training rows, and the behaviour types with no history at all."""
    import torch

    src = int(spec.domains.lookup([source_domain])[0])
    is_src = joint_t["domain"] == src
    users_src = torch.unique(joint_t["user"][is_src])
    users_tgt = torch.unique(target_t["user"])
    seq = target_t["seq_item"]  # (B, n_behaviours, L)
    behaviors = list(spec.behaviors)
    has = (seq != 0).any(-1).any(0).tolist() if len(seq) else [False] * len(behaviors)
    return {
        "source_rows": int(is_src.sum()),
        "source_positives": int((joint_t["label"][is_src] > 0).sum()),
        "overlap_users": int(torch.isin(users_tgt, users_src).sum()),
        # a type the spec left out (no data) or one whose sequences are all empty
        "empty_behaviors": [b for b in C.BEHAVIOR_TYPES
                            if b not in behaviors or not has[behaviors.index(b)]],
    }
