"""DACDR's two-step attention: equal to the literal equations, and it learns to select.

The selection tests plant relevance by construction: each sequence holds distractors plus one element
per domain (DA) or per target category (IA) whose shop decides the click. Mean pooling dilutes that
element by 1/n; attention that concentrates on it recovers the signal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.dacdr import DACDR, DACDRConfig
from models.layers import DomainAwareCrossAttention, PackedSeq
from models.metrics import auc

N_CAT, N_SHOP, L = 12, 6, 8
FIRST = 2  # index 0 = padding, 1 = unknown


def _reference(att: DomainAwareCrossAttention, x: torch.Tensor, beh: torch.Tensor, mask: torch.Tensor,
               e_d: torch.Tensor, e_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 3-4 position by position on the dense (B,NB,L,X) form with a masked softmax."""
    X = x + beh[None, :, None, :]  # (B,NB,L,X)
    n = mask.sum(-1, keepdim=True).clamp(min=1).float()  # (B,NB,1)

    def softmax(s: torch.Tensor) -> torch.Tensor:
        s = s.masked_fill(~mask, float("-inf"))
        w = torch.softmax(s, dim=-1)
        return torch.nan_to_num(w) * mask

    uniform = mask / n
    if att.use_da:
        q1 = F.normalize(att.w1_q(e_d), dim=-1)[:, None, None, :]
        k1 = F.normalize(att.w1_k(X), dim=-1)
        a_d = softmax(att.log_tau1.exp() * (q1 * k1).sum(-1))
    else:
        a_d = uniform
    e1 = (n * a_d).unsqueeze(-1) * att.w1_v(X)  # (B,NB,L,A): e1_j = n alpha_D_j X_j W1V
    if att.use_ia:
        q2 = F.normalize(att.w2_q(e_v), dim=-1)[:, None, None, :]
        k2 = F.normalize(att.w2_k(e1), dim=-1)
        a_i = softmax(att.log_tau2.exp() * (q2 * k2).sum(-1))
    else:
        a_i = uniform
    e_z = (a_i.unsqueeze(-1) * att.w2_v(e1)).sum(2)  # (B,NB,A)
    return e_z, a_d, a_i


def test_attention_equals_the_literal_equations() -> None:
    """Packed, re-associated forward == dense per-position eq. 3-4, for every DA/IA switch."""
    g = torch.Generator().manual_seed(0)
    B, NB, X, D, V, A = 5, 3, 6, 4, 7, 5
    mask = torch.rand(B, NB, L, generator=g) < 0.5
    mask[0, 1] = False  # an empty sequence
    x = torch.randn(B, NB, L, X, generator=g) * mask.unsqueeze(-1)
    beh, e_d = torch.randn(NB, X, generator=g), torch.randn(B, D, generator=g)
    e_v = torch.randn(B, V, generator=g)
    packed = PackedSeq.from_mask(mask)
    parts = [x.reshape(-1, X)[packed.pos][:, :2], x.reshape(-1, X)[packed.pos][:, 2:]]
    for da in (True, False):
        for ia in (True, False):
            torch.manual_seed(1)
            att = DomainAwareCrossAttention([2, X - 2], D, V, A, da, ia, temperature=3.0)
            e_z, _, a_d, a_i = att(parts, beh, packed, e_d, e_v)
            got = (e_z, a_d, a_i)
            want = _reference(att, x, beh, mask, e_d, e_v)
            for a, b in zip(got, want, strict=True):
                assert torch.allclose(a, b, atol=1e-5), (da, ia)


def _planted(n: int, seed: int, by_item: bool) -> dict[str, torch.Tensor]:
    """Rows of 2 domains; each sequence has 3-6 distractors and two planted elements.

    by_item=False: the planted elements have category 2 (domain A's) and 3 (domain B's); the row's domain
    picks which one's shop decides the click. by_item=True: they have categories 2 and 3, and the target
    item's category picks (one domain).
    """
    rng = np.random.default_rng(seed)
    length = rng.integers(5, L + 1, n)
    cat = rng.integers(4, N_CAT + FIRST, (n, L))  # distractor categories 4..13
    shop = rng.integers(FIRST, N_SHOP + FIRST, (n, L))
    p0 = rng.integers(0, length)  # two distinct positions inside the real part
    p1 = (p0 + 1 + rng.integers(0, length - 1)) % length
    pos = np.stack([p0, p1], axis=1)
    rows = np.arange(n)
    cat[rows, pos[:, 0]], cat[rows, pos[:, 1]] = 2, 3
    which = rng.integers(0, 2, n)  # 0 -> the category-2 element decides, 1 -> the category-3 one
    decisive = shop[rows, pos[rows, which]]
    p = 1 / (1 + np.exp(-(4.0 * (decisive < FIRST + N_SHOP // 2) - 2.0)))
    label = (rng.random(n) < p).astype(np.float32)
    real = np.arange(L)[None, :] < length[:, None]
    seq_cat = np.where(real, cat, 0)
    seq_shop = np.where(real, shop, 0)
    t = {
        "user": torch.full((n,), 2), "item": torch.full((n,), 2),
        "category": torch.as_tensor(2 + which if by_item else np.full(n, 2)),
        "brand": torch.full((n,), 2), "shop": torch.full((n,), 2),
        "domain": torch.as_tensor(2 + (np.zeros(n, int) if by_item else which)),
        "domain_feats": torch.full((n, 1), 2), "task": torch.zeros(n, dtype=torch.long),
        "seq_item": torch.as_tensor(seq_cat, dtype=torch.int32)[:, None, :],
        "seq_category": torch.as_tensor(seq_cat, dtype=torch.int32)[:, None, :],
        "seq_brand": torch.as_tensor(np.where(real, 2, 0), dtype=torch.int32)[:, None, :],
        "seq_shop": torch.as_tensor(seq_shop, dtype=torch.int32)[:, None, :],
        "seq_value": torch.as_tensor(np.where(real, 1, 0), dtype=torch.int32)[:, None, :],
        "label": torch.as_tensor(label),
    }
    return {k: v.long() if v.dtype == torch.int64 else v for k, v in t.items()}


def _train(by_item: bool, da: bool, ia: bool) -> tuple[DACDR, dict[str, torch.Tensor]]:
    """A small DACDR trained on planted rows (seeded); returns it and held-out rows."""
    torch.manual_seed(0)
    cfg = DACDRConfig(n_items=N_CAT + FIRST, n_categories=N_CAT + FIRST, n_brands=3, n_shops=N_SHOP + FIRST,
                      n_values=3,
                      n_domains=4, feature_sizes=[3], n_behaviors=1, max_len=L, embed_dim=16, attn_dim=16,
                      encoder_hidden=[32], head_hidden=[32], use_domain_attention=da, use_item_attention=ia,
                      sparse_embeddings=False)
    model = DACDR(cfg)
    train, test = _planted(6000, 1, by_item), _planted(3000, 2, by_item)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        for idx in torch.randperm(len(train["label"]), generator=g).split(256):
            batch = {k: v[idx] for k, v in train.items()}
            loss = F.binary_cross_entropy_with_logits(model(batch), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), test


def _norm_entropy(alpha: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over rows of H(alpha) / log(n) (1 = uniform, 0 = one element)."""
    n = mask.sum(-1).float()
    h = -(alpha.clamp(min=1e-12).log() * alpha).sum(-1)
    return float((h / n.log()).mean())


def _auc_with(model: DACDR, test: dict[str, torch.Tensor], step: str, on: bool) -> float:
    """Test AUC with one attention step forced uniform (on=False) at inference."""
    for att in (model.attn_seq, model.attn_side):
        setattr(att, step, on)
    with torch.no_grad():
        pred = model(test).numpy()
    for att in (model.attn_seq, model.attn_side):
        setattr(att, step, True)
    return auc(test["label"].numpy(), pred)


@pytest.mark.parametrize(("by_item", "step", "alpha"), [(False, "use_da", "alpha_d_side"),
                                                      (True, "use_ia", "alpha_i_side")], ids=["DA", "IA"])
def test_attention_concentrates_and_matters(by_item: bool, step: str, alpha: str) -> None:
    """DA learns to pick the domain's planted element, IA the one matching the target item's category:
    entropy well below uniform, and the AUC drops when the weights are made uniform at inference."""
    model, test = _train(by_item=by_item, da=step == "use_da", ia=step == "use_ia")
    with torch.no_grad():
        enc = model.encode(test)
    mask = test["seq_item"][:, 0] != 0
    ent = _norm_entropy(enc[alpha][:, 0], mask)
    assert ent < 0.75, f"{step} attention stayed near uniform: entropy/log(n) = {ent:.3f}"
    on, off = _auc_with(model, test, step, True), _auc_with(model, test, step, False)
    assert on > 0.70 and on - off > 0.05, (on, off)


def test_mean_pooling_cannot_separate_planted_rows() -> None:
    """The control: with both steps off the planted signal is diluted (AUC well below attention's)."""
    model, test = _train(by_item=False, da=False, ia=False)
    with torch.no_grad():
        pooled_auc = auc(test["label"].numpy(), model(test).numpy())
    assert pooled_auc < 0.68, pooled_auc
    assert math.isfinite(pooled_auc)
