"""Serving's split path (user half once, candidates batched) equals the one forward definition."""

from __future__ import annotations

import pytest
import torch

from features import contract as C
from models.dacdr import DACDR, DACDRConfig
from models.layers import PackedSeq
from models.spec import FeatureSpec
from tests.model.synth import synth_table

MANIFEST = {
    "max_len": 8,
    "behavior_types": list(C.BEHAVIOR_TYPES),
    "domain_features": ["page", "surface"],
    "domains": {
        "t_search": {"task": "ctr", "role": "target"},
        "t_feed": {"task": "rating", "role": "target"},  # rating rows add the offset: both tasks checked
    },
}
ITEM_KEYS = ("item", "category", "brand", "shop")  # the candidate's fields; the rest are the user's
SWITCHES = [
    {},
    {"use_domain_attention": False},
    {"use_item_attention": False},
    {"use_domain_attention": False, "use_item_attention": False},
    {"per_domain": False},
    {"shared_transfer": False},
    {"item_bias": False},
    {"value_in_seq": True},
    {"item_ids": False},
    {"norm_user": False},
]


@pytest.fixture(scope="module")
def spec_batch() -> tuple[FeatureSpec, dict[str, torch.Tensor]]:
    """A fitted spec and a tensorized batch of 64 synthetic rows, two of them with no history."""
    tbl = synth_table(64, seed=11, max_len=8)
    spec = FeatureSpec.fit(tbl, MANIFEST)
    batch = spec.tensorize(tbl)
    for k in [k for k in batch if k.startswith("seq_")]:
        batch[k][:2] = 0  # cold users
    return spec, batch


def test_expand_equals_packing_the_repeated_rows() -> None:
    """PackedSeq.expand(owner) == from_mask(mask[owner]), and its source index points at the same ids."""
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(5, 3, 6, generator=g) < 0.4
    mask[1] = False  # a user with no history at all
    ids = torch.randint(1, 100, mask.shape, generator=g) * mask
    owner = torch.tensor([4, 1, 0, 0, 2, 4, 3, 1])
    got, src = PackedSeq.from_mask(mask).expand(owner)
    want = PackedSeq.from_mask(mask[owner])
    for name in ("pos", "seg", "row", "lengths", "count"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert got.shape == want.shape
    assert torch.equal(PackedSeq.from_mask(mask).gather(ids).index_select(0, src), want.gather(ids[owner]))


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: ",".join(o) or "default")
def test_split_scoring_equals_forward(spec_batch, overrides: dict) -> None:
    """score(encode_user(users), candidates, owner) == forward on each (user, candidate) row, every switch."""
    spec, batch = spec_batch
    torch.manual_seed(0)
    model = DACDR(DACDRConfig.from_spec(spec, overrides)).eval()
    with torch.no_grad():  # move off the init so attention, M_d and biases are all non-trivial
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    U, Cn = 12, 40
    users = {k: v[:U] for k, v in batch.items() if k not in ITEM_KEYS}
    pick = torch.randint(0, len(batch["item"]), (Cn,), generator=g)
    items = {k: batch[k][pick] for k in ITEM_KEYS}
    owner = torch.randint(0, U, (Cn,), generator=g)
    owner[:2] = torch.tensor([0, 1])  # candidates of the cold users too
    rows = {**{k: v.index_select(0, owner) for k, v in users.items()}, **items}
    with torch.no_grad():
        want = model(rows)
        got = model.score(model.encode_user(users), items, owner)
    assert got.shape == (Cn,)
    # float32 sums in another order (a sparse product pools the split path): rounding, not a formula
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert want.std() > 1e-3  # the comparison is between outputs that vary
