"""DACDR forward: finite on empty sequences, attention really used, ablations change the computation."""

from __future__ import annotations

import pytest
import torch

from features import contract as C
from models.spec import FeatureSpec
from models.train import make_optimizers, task_loss
from models.zoo import MODELS
from tests.model.synth import synth_table

MANIFEST = {
    "max_len": 8,
    "behavior_types": list(C.BEHAVIOR_TYPES),
    "domain_features": ["page", "surface"],
    "domains": {"t_search": {"task": "ctr", "role": "target"}, "t_feed": {"task": "ctr", "role": "target"}},
}


@pytest.fixture(scope="module")
def spec_batch() -> tuple[FeatureSpec, dict[str, torch.Tensor]]:
    """A fitted spec and a tensorized batch of 256 synthetic rows."""
    tbl = synth_table(256, seed=5, max_len=8)
    spec = FeatureSpec.fit(tbl, MANIFEST)
    return spec, spec.tensorize(tbl)


def build(name: str, spec: FeatureSpec, seed: int = 0) -> torch.nn.Module:
    """A seeded zoo model."""
    torch.manual_seed(seed)
    entry = MODELS[name]
    return entry.build(entry.make_config(spec, {}))


def test_empty_sequences_give_finite_output(spec_batch) -> None:
    """All-empty sequences: finite output, zero attention weights, no NaN gradients."""
    spec, batch = spec_batch
    empty = {k: (torch.zeros_like(v) if k.startswith("seq_") else v) for k, v in batch.items()}
    for name in MODELS:
        if not name.startswith("dacdr"):
            continue
        model = build(name, spec)
        enc = model.encode(empty)
        assert torch.isfinite(enc["raw"]).all(), name
        assert (enc["alpha_i_seq"] == 0).all() and (enc["e_seq"] == 0).all(), name
        model(empty).sum().backward()
        assert all(torch.isfinite(p.grad.to_dense()).all() for p in model.parameters() if p.grad is not None)


# The packed attention against the literal per-position equations: tests/model/test_attention.py


def test_domain_attention_uses_domain_features_only_when_on(spec_batch) -> None:
    """Changing the domain features moves e_seq (the attended sequence) only with DA on."""
    spec, batch = spec_batch
    other = dict(batch, domain_feats=torch.flip(batch["domain_feats"], dims=[0]),
                 domain=torch.flip(batch["domain"], dims=[0]))
    changed = batch["domain"] != other["domain"]
    assert changed.any()
    cases = (("dacdr", True), ("dacdr_no_da", False), ("dacdr_no_ia", True), ("dacdr_no_both", False))
    for name, expect in cases:
        model = build(name, spec)
        a, b = model.encode(batch)["e_seq"], model.encode(other)["e_seq"]
        moved = not torch.allclose(a[changed], b[changed])
        if name == "dacdr_no_da":
            # IA still sees e_v only, so nothing in e_seq depends on e_d
            assert not moved
        assert moved == expect, name


def test_item_attention_uses_target_item_only_when_on(spec_batch) -> None:
    """Changing the target item moves e_seq only with IA on; uniform weights when off."""
    spec, batch = spec_batch
    other = dict(batch, item=torch.roll(batch["item"], 1), category=torch.roll(batch["category"], 1),
                 brand=torch.roll(batch["brand"], 1), shop=torch.roll(batch["shop"], 1))
    cases = (("dacdr", True), ("dacdr_no_ia", False), ("dacdr_no_da", True), ("dacdr_no_both", False))
    for name, expect in cases:
        model = build(name, spec)
        enc_a, enc_b = model.encode(batch), model.encode(other)
        moved = not torch.allclose(enc_a["e_seq"], enc_b["e_seq"])
        assert moved == expect, name
        if not expect:
            mask = (batch["seq_item"] != 0).float()
            uniform = mask / mask.sum(-1, keepdim=True).clamp(min=1)
            torch.testing.assert_close(enc_a["alpha_i_seq"], uniform)


def build_dacdr(spec: FeatureSpec, seed: int = 0, **overrides) -> torch.nn.Module:
    """A seeded DACDR with config overrides."""
    from models.dacdr import DACDR, DACDRConfig

    torch.manual_seed(seed)
    return DACDR(DACDRConfig.from_spec(spec, overrides))


def test_behaviour_values_reach_every_sequence_model(spec_batch) -> None:
    """seq_value (stars, price tokens) is read: DACDR's side branch and every pooling baseline move with it;
    DACDR's item branch moves only with value_in_seq (elements [item, value]), off for click logs."""
    spec, batch = spec_batch
    assert batch["seq_value"].shape == batch["seq_item"].shape
    real = batch["seq_item"] != 0
    assert bool((batch["seq_value"][real] >= 1).all()) and bool((batch["seq_value"][~real] == 0).all())
    shifted = torch.where(real, 2 + (batch["seq_value"] - 1) % (len(spec.values) - 2), 0).to(torch.int32)
    other = dict(batch, seq_value=shifted)
    assert not torch.equal(other["seq_value"], batch["seq_value"])
    for value_in_seq in (False, True):
        model = build_dacdr(spec, value_in_seq=value_in_seq)
        enc_a, enc_b = model.encode(batch), model.encode(other)
        assert not torch.allclose(enc_a["e_side"], enc_b["e_side"])
        assert torch.allclose(enc_a["e_seq"], enc_b["e_seq"]) != value_in_seq
    for name in ("dnn_multi", "shared_bottom", "mmoe"):
        m = build(name, spec).eval()
        assert not torch.allclose(m(batch), m(other)), name


def test_attention_weights_are_not_bypassed(spec_batch) -> None:
    """Zeroing the item attention's query projection makes its weights uniform and changes the output:
    the weights feed the result. (Scaling it would prove nothing: the scores are cosines, scale-free.)
    Without the prior: with it the head starts at zero, so no learned term reaches the untrained output."""
    spec, batch = spec_batch
    model = build_dacdr(spec, prior=False)
    alpha, before = model.encode(batch)["alpha_i_seq"], model(batch)
    real = alpha > 0  # softmax weights are positive exactly at real sequence positions
    uniform = torch.where(real, 1.0 / real.sum(-1, keepdim=True).clamp(min=1), torch.zeros_like(alpha))
    assert (alpha - uniform).abs().max() > 0.1  # seeded init: far from uniform
    with torch.no_grad():
        model.attn_seq.w2_q.weight.zero_()
    torch.testing.assert_close(model.encode(batch)["alpha_i_seq"], uniform)
    # ~1e-3 on this seeded batch; rescaling w2_q instead moves it by float noise (~1e-8)
    assert (before - model(batch)).abs().max() > 1e-4


def test_loss_falls(spec_batch) -> None:
    """A few steps on one batch reduce the training loss clearly."""
    spec, batch = spec_batch
    model = build("dacdr", spec)
    opts = make_optimizers(model, lr=5e-3, weight_decay=0.0)
    losses = []
    for _ in range(40):
        loss = task_loss(model(batch), batch["label"], batch["task"])
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_value_in_seq_is_on_exactly_for_rating_behaviours() -> None:
    """from_spec puts values into the item stream when the spec has `rate` behaviours, not for clicks."""
    from models.dacdr import DACDRConfig

    tbl = synth_table(64, seed=1, max_len=8)
    rate_col = C.seq_col("rate", C.ITEM_ID)
    for behaviors, expect in ((["browse", "click"], False), (["browse", "rate"], True)):
        spec = FeatureSpec.fit(tbl, dict(MANIFEST, behavior_types=behaviors))
        assert ("rate" in spec.behaviors) == expect, (spec.behaviors, rate_col)
        assert DACDRConfig.from_spec(spec, {}).value_in_seq == expect
        assert DACDRConfig.from_spec(spec, {"value_in_seq": False}).value_in_seq is False


def test_shared_transfer_starts_as_the_mean_of_per_behaviour_maps(spec_batch) -> None:
    """sum_b s_b t_u,b^T M_d t_v (one map, s_b = 1/NB, M_d = I) equals sum_b t_u,b^T (I/NB) t_v (a map per
    behaviour) at initialisation, with 1/NB of the parameters; training then moves them apart."""
    spec, batch = spec_batch
    # without the prior: with it M_d starts at zero (the model starts exactly at the closed form)
    shared = build_dacdr(spec, shared_transfer=True, prior=False)
    per_b = build_dacdr(spec, shared_transfer=False, prior=False)
    k, nb = shared.cfg.embed_dim, shared.cfg.n_behaviors
    assert shared.domain_bilinear.weight.shape[1] == k * k
    assert per_b.domain_bilinear.weight.shape[1] == nb * k * k
    own = {"domain_bilinear.weight", "behavior_weight"}  # every other weight: copied over
    rest = {n: w for n, w in per_b.state_dict().items() if n not in own}
    assert set(shared.load_state_dict(rest, strict=False).missing_keys) == own
    shared.eval(), per_b.eval()
    with torch.no_grad():
        torch.testing.assert_close(shared(batch), per_b(batch))
        shared.behavior_weight[0] += 1.0  # the behaviour weights are in the path
        assert not torch.allclose(shared(batch), per_b(batch))


def test_item_ids_off_reads_side_info_only(spec_batch) -> None:
    """item_ids=False: swapping item ids (target and sequence) with side info kept moves only the item bias,
    so with item_bias off the output is unchanged; with ids on it moves."""
    spec, batch = spec_batch
    rolled = torch.roll(batch["seq_item"], 1, dims=0).clamp(min=1)  # other ids at the same real positions
    other = dict(batch, item=torch.roll(batch["item"], 1),
                 seq_item=torch.where(batch["seq_item"] != 0, rolled, batch["seq_item"]))
    for item_ids in (True, False):
        model = build_dacdr(spec, item_ids=item_ids, item_bias=False, prior=False).eval()
        with torch.no_grad():
            same = torch.allclose(model(batch), model(other))
        assert same == (not item_ids), item_ids
