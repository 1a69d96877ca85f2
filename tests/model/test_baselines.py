"""Baseline zoo: every baseline trains on the tiny preset and reloads; the pieces that follow their
papers (STAR's partitioned normalisation, the bridge stages, source rows) do what the docs say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from features import contract as C

BASELINES = ("popularity", "dnn_single", "dnn_multi", "cmf", "emcdr", "sscdr", "ptupcdr", "shared_bottom",
             "mmoe", "ple", "star")


@pytest.fixture(scope="module")
def tiny_tensors(tiny_logs: Path, tiny_dataset: Path):
    """Tensors of the tiny preset shared by the smoke tests (validation trimmed to keep epochs cheap)."""
    from models.experiments import Tensors, _day_start_us, source_rows
    from models.spec import FeatureSpec, read_manifest
    from models.train import read_split

    manifest = read_manifest(tiny_dataset)
    tr, va = read_split(tiny_dataset, "train"), read_split(tiny_dataset, "validation")
    src = source_rows(tiny_logs, tr, before_us=_day_start_us(manifest["days"]["test"][0]))
    joint = pa.concat_tables([tr, src])
    spec = FeatureSpec.fit(joint, manifest)
    source = str(pc.unique(src[C.DOMAIN])[0])
    return Tensors(spec, spec.tensorize(tr), spec.tensorize(joint), spec.tensorize(va.slice(0, 1500)), source)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_on_tiny_and_reloads(name: str, tiny_tensors, tmp_path: Path) -> None:
    """One short epoch through the shared trainer; the checkpoint rebuilds the same predictions."""
    from models.checkpoint import load_checkpoint
    from models.experiments import ExperimentConfig, fit_one
    from models.predict import predict_tensors

    cfg = ExperimentConfig(epochs=1, batch_size=256, max_batches_per_epoch=4, tune=False)
    train_t = tiny_tensors.joint if name not in ("popularity", "dnn_single") else tiny_tensors.target
    res = fit_one(name, tiny_tensors, train_t, tiny_tensors.val, {}, cfg, seed=0, out=tmp_path)
    model, val = res.model, res.val_value
    assert np.isfinite(val) and 0.0 < val < 1.0  # mean per-domain validation AUC
    pred = predict_tensors(model, tiny_tensors.val, 4096, torch.device("cpu"))
    assert pred.shape == (len(tiny_tensors.val["item"]),)
    assert np.all((pred > 0) & (pred < 1))
    loaded, _, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    assert meta["model_name"] == name
    np.testing.assert_allclose(predict_tensors(loaded, tiny_tensors.val, 4096, torch.device("cpu")), pred,
                               rtol=1e-5, atol=1e-6)
    if name in ("emcdr", "sscdr", "ptupcdr"):
        assert loaded.cfg.stage == "serve" and bool(loaded.has_target.any())


def test_partitioned_norm_keeps_per_domain_statistics() -> None:
    """Training normalises each domain with its own batch statistics and updates only its running
    statistics; inference uses the running statistics of the row's domain."""
    from models.baselines.star import PartitionedNorm

    torch.manual_seed(0)
    pn = PartitionedNorm(4, 3, momentum=1.0)  # momentum 1: running stats = the last batch's stats
    dom = torch.tensor([2, 2, 2, 3, 3, 3, 3])
    x = torch.randn(7, 3) + torch.tensor([0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0]).unsqueeze(-1)
    y = pn(x, dom)
    for d in (2, 3):
        m = dom == d
        ref = (x[m] - x[m].mean(0)) / torch.sqrt(x[m].var(0, unbiased=False) + pn.eps)
        torch.testing.assert_close(y[m], ref)
        torch.testing.assert_close(pn.running_mean[d], x[m].mean(0))
        torch.testing.assert_close(pn.running_var[d], x[m].var(0, unbiased=True))
    torch.testing.assert_close(pn.running_mean[1], torch.zeros(3))  # an absent domain is untouched
    pn.eval()
    z = pn(x[:1], dom[:1])
    torch.testing.assert_close(z, (x[:1] - pn.running_mean[2]) / torch.sqrt(pn.running_var[2] + pn.eps))


def test_star_linear_is_shared_times_domain_weights() -> None:
    """Row b uses W * W_d[domain b] and b + b_d[domain b]."""
    from models.baselines.star import StarLinear

    torch.manual_seed(0)
    lin = StarLinear(3, 4, 2)
    with torch.no_grad():
        lin.w_d.normal_()
        lin.b_d.normal_()
    x, dom = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    rows = [x[i] @ (lin.w * lin.w_d[d]) + lin.b + lin.b_d[d] for i, d in enumerate(dom.tolist())]
    ref = torch.stack(rows)
    torch.testing.assert_close(lin(x, dom), ref)


def test_bridge_serve_stage_maps_only_cold_users() -> None:
    """EMCDR in stage serve: users with target rows keep their own factor, the others get f(u_s)."""
    from models.baselines.common import BridgeConfig
    from models.baselines.emcdr import EMCDR

    torch.manual_seed(0)
    cfg = BridgeConfig(n_users=6, n_items=5, n_categories=3, n_brands=3, n_shops=3, n_values=3, n_domains=4,
                       feature_sizes=[], n_behaviors=1, max_len=2, embed_dim=4, source_domain=2,
                       stage="serve")
    m = EMCDR(cfg)
    m.has_target[2:4] = True
    batch = {"user": torch.tensor([2, 3, 4, 5]), "item": torch.tensor([2, 3, 4, 2]),
             "domain": torch.full((4,), 3), "task": torch.zeros(4, dtype=torch.long),
             "seq_item": torch.zeros(4, 1, 2, dtype=torch.int32)}
    own = m.user_tgt(batch["user"])
    mapped = m.mapping(m.user_src(batch["user"]))
    expect = torch.cat([own[:2], mapped[2:]])
    torch.testing.assert_close(m.target_user(batch), expect)
    m.cfg.stage = "bridge"
    torch.testing.assert_close(m.target_user(batch), mapped)


def test_sscdr_subtracts_the_mapping_spread_from_bridged_rows_only() -> None:
    """SSCDR in stage serve: cold users' target rows score spread lower (E||u_t - f||^2 lengthens every
    distance to a mapped vector); warm users and source rows are untouched; pre-training never shifts."""
    from models.baselines.common import BridgeConfig
    from models.baselines.sscdr import SSCDR

    torch.manual_seed(0)
    cfg = BridgeConfig(n_users=6, n_items=5, n_categories=3, n_brands=3, n_shops=3, n_values=3, n_domains=4,
                       feature_sizes=[], n_behaviors=1, max_len=2, embed_dim=4, source_domain=2,
                       stage="serve", metric=True)
    m = SSCDR(cfg).eval()
    m.has_target[2:4] = True
    batch = {"user": torch.tensor([2, 3, 4, 5, 4]), "item": torch.tensor([2, 3, 4, 2, 3]),
             "domain": torch.tensor([3, 3, 3, 3, 2]), "task": torch.ones(5, dtype=torch.long),
             "seq_item": torch.zeros(5, 1, 2, dtype=torch.int32)}
    with torch.no_grad():
        before = m(batch)
        m.spread.fill_(0.7)
        after = m(batch)
        torch.testing.assert_close(before - after, torch.tensor([0.0, 0.0, 0.7, 0.7, 0.0]))
        m.cfg.stage = "pretrain"
        pre = m(batch)
        m.spread.zero_()
        torch.testing.assert_close(pre, m(batch))


def test_pretrain_holdout_takes_seeded_target_rows_only() -> None:
    """Bridge pre-training early-stops on a seeded ~10 % of the target rows; source rows all stay in fit."""
    from models.baselines.stages import pretrain_holdout

    n = 2000
    t = {"row": torch.arange(n), "domain": torch.tensor([2, 3]).repeat(n // 2)}
    is_tgt = t["domain"] == 3
    fit_a, hold_a = pretrain_holdout(t, is_tgt, seed=4)
    fit_b, hold_b = pretrain_holdout(t, is_tgt, seed=4)
    _, hold_c = pretrain_holdout(t, is_tgt, seed=5)
    assert torch.equal(hold_a["row"], hold_b["row"]) and not torch.equal(hold_a["row"], hold_c["row"])
    assert bool((hold_a["domain"] == 3).all()) and 60 < len(hold_a["row"]) < 140
    assert sorted(fit_a["row"].tolist() + hold_a["row"].tolist()) == list(range(n))


def test_fit_mapping_recovers_a_linear_map() -> None:
    """The mapping regression learns tgt = src A (held-out MSE far below the targets' variance)."""
    from models.baselines.stages import MappingFit, fit_mapping

    g = torch.Generator().manual_seed(0)
    src = torch.randn(400, 4, generator=g)
    tgt = src @ torch.randn(4, 4, generator=g)
    lin = torch.nn.Linear(4, 4)
    mse = fit_mapping(lin, src, tgt, MappingFit(epochs=200, lr=5e-2, patience=20, seed=0))
    assert mse < 0.05 * float(tgt.var())


def test_source_rows_label_browses_clicked_the_same_day(tiny_logs: Path, tiny_dataset: Path) -> None:
    """A source row per browse; label 1 exactly when a click of the same user, item and day exists."""
    from features import io
    from models.experiments import source_rows
    from models.train import read_split

    like = read_split(tiny_dataset, "validation")
    rows = source_rows(tiny_logs, like)
    assert rows.schema == like.schema
    beh = io.read_table(tiny_logs, C.BEHAVIORS).to_pandas()
    browse = beh[beh[C.BEHAVIOR] == "browse"]
    assert rows.num_rows == len(browse)
    df = rows.select([C.EVENT_TIME, C.USER_ID, C.ITEM_ID, C.LABEL]).to_pandas()
    click_keys = set(zip(*(beh.loc[beh[C.BEHAVIOR] == "click", c] for c in (C.USER_ID, C.ITEM_ID)),
                         beh.loc[beh[C.BEHAVIOR] == "click", C.EVENT_TIME].dt.date, strict=True))
    sample = df.sample(300, random_state=0)
    expect = [float((u, i, t.date()) in click_keys) for u, i, t in
              zip(sample[C.USER_ID], sample[C.ITEM_ID], sample[C.EVENT_TIME], strict=True)]
    np.testing.assert_array_equal(sample[C.LABEL].to_numpy(), expect)
    assert 0.05 < df[C.LABEL].mean() < 0.9
    assert all(pc.list_value_length(rows[C.seq_col(b, C.ITEM_ID)]).to_numpy().max() == 0
               for b in C.BEHAVIOR_TYPES)


def test_source_rows_with_sequences_see_only_earlier_days(tiny_logs: Path, tiny_dataset: Path) -> None:
    """sequences=True: each source row carries exactly the user's last max_len source behaviours of each
    type from days before the row's own (brute force over sampled rows): its own day never leaks in."""
    from features import io
    from features.sequences import DEFAULT_MAX_LEN
    from models.experiments import source_rows
    from models.train import read_split

    like = read_split(tiny_dataset, "validation")
    rows = source_rows(tiny_logs, like, sequences=True)
    plain = source_rows(tiny_logs, like)
    assert rows.schema == like.schema and rows.num_rows == plain.num_rows
    assert rows.select([C.USER_ID, C.ITEM_ID, C.LABEL]).equals(plain.select([C.USER_ID, C.ITEM_ID, C.LABEL]))
    beh = io.read_table(tiny_logs, C.BEHAVIORS).to_pandas()
    beh["day"] = beh[C.EVENT_TIME].dt.normalize()
    df = rows.to_pandas().sample(300, random_state=0)
    lengths = []
    for _, r in df.iterrows():
        day = r[C.EVENT_TIME].normalize()
        for b in ("browse", "click"):
            seen = beh[(beh[C.USER_ID] == r[C.USER_ID]) & (beh[C.BEHAVIOR] == b) & (beh["day"] < day)]
            got = list(r[C.seq_col(b, C.ITEM_ID)])
            assert len(got) == min(len(seen), DEFAULT_MAX_LEN), (r[C.USER_ID], b, day)
            assert set(got) <= set(seen[C.ITEM_ID]), (r[C.USER_ID], b, day)
            lengths.append(len(got))
    assert max(lengths) > 0 and min(lengths) == 0  # histories exist, and the first day's are empty
