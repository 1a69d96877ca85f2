"""The log simulator reproduces the structure DACDR is built for (paper Table 1), deterministically."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features import contract as C
from features import simulator
from features.io import check_contract, read_table
from models.metrics import auc, expected_auc
from models.oracle import oracle_auc, unshifted_auc

TEST_DAY = (simulator.START_DATE + timedelta(days=simulator.N_DAYS - 1)).isoformat()


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tables(tiny_logs: Path) -> dict:
    """The tiny landing zone's tables as pandas frames."""
    return {t: read_table(tiny_logs, t).to_pandas() for t in C.TABLES}


def test_same_seed_same_bytes_other_seed_differs(tiny_logs: Path, tmp_path: Path) -> None:
    """simulate('tiny', 0) twice gives identical files; seed 1 gives different ones."""
    again = simulator.simulate("tiny", seed=0, out=tmp_path / "again")
    assert again.out == tmp_path / "again"
    first, second = _digest(tiny_logs), _digest(tmp_path / "again")
    assert len(first) > 20 and first == second
    simulator.simulate("tiny", seed=1, out=tmp_path / "other")
    other = _digest(tmp_path / "other")
    assert other.keys() == first.keys()
    assert all(other[k] != first[k] for k in first if "impressions" in k or "behaviors" in k)


def test_tables_pass_the_contract_check(tiny_logs: Path) -> None:
    """Every table of the main zone and of the onboarding zone passes check_contract."""
    rows = check_contract(tiny_logs)
    assert rows[C.IMPRESSIONS] > 60_000 and rows[C.BEHAVIORS] > 100_000 and rows[C.ITEMS] == 1_000
    onboard = tiny_logs / simulator.ONBOARD_DIR / simulator.ONBOARD.name
    assert check_contract(onboard, (C.IMPRESSIONS, C.DOMAINS))[C.DOMAINS] == 1


def test_domains_table(tables: dict) -> None:
    """One ctr source domain, three ctr target domains, 2-3 domain-feature columns, no onboarding row."""
    dom = tables[C.DOMAINS]
    assert sorted(dom[C.ROLE]) == [C.ROLE_SOURCE] + [C.ROLE_TARGET] * 3
    assert set(dom[C.TASK]) == {C.TASK_CTR}
    assert dom.loc[dom[C.ROLE] == C.ROLE_SOURCE, C.DOMAIN].item() == simulator.SOURCE_DOMAIN
    assert 2 <= len(C.domain_feature_columns(list(dom.columns))) <= 3
    assert simulator.ONBOARD.name not in set(dom[C.DOMAIN])
    # the target domains differ in their features (the model's e_d can tell them apart)
    feats = dom[C.domain_feature_columns(list(dom.columns))]
    assert not feats.duplicated().any()


def test_target_ctr_and_overlap_in_paper_ranges(tables: dict) -> None:
    """Each target domain's CTR lies in [1.5, 2.2] % and its user overlap with the source in [69, 94] %."""
    imp, beh = tables[C.IMPRESSIONS], tables[C.BEHAVIORS]
    source_users = set(beh.loc[beh[C.DOMAIN] == simulator.SOURCE_DOMAIN, C.USER_ID])
    for name, rows in imp.groupby(C.DOMAIN):
        ctr = rows[C.LABEL].mean()
        assert 0.015 <= ctr <= 0.022, (name, ctr)
        users = set(rows[C.USER_ID])
        overlap = len(users & source_users) / len(users)
        assert 0.69 <= overlap <= 0.94, (name, overlap)
    assert imp[C.DOMAIN].nunique() == 3


def test_cold_start_users_on_the_test_day(tables: dict) -> None:
    """Each target domain has source users with test-day impressions and none in the training window."""
    imp, beh = tables[C.IMPRESSIONS], tables[C.BEHAVIORS]
    day = imp[C.EVENT_TIME].dt.strftime("%Y-%m-%d")
    assert day.max() == TEST_DAY
    source_users = set(beh[C.USER_ID])
    for name in imp[C.DOMAIN].unique():
        mine = imp[C.DOMAIN] == name
        train_users = set(imp.loc[mine & (day < TEST_DAY), C.USER_ID])
        test_users = set(imp.loc[mine & (day == TEST_DAY), C.USER_ID])
        cold = (test_users - train_users) & source_users
        assert len(cold) >= 10, (name, len(cold))
        assert len(cold) < len(test_users) / 2


def test_source_funnel_volumes(tables: dict) -> None:
    """Source behaviours: browse > click > cart > purchase, all in the source domain, 11 days."""
    beh = tables[C.BEHAVIORS]
    assert set(beh[C.DOMAIN]) == {simulator.SOURCE_DOMAIN}
    counts = beh[C.BEHAVIOR].value_counts()
    assert counts["browse"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    assert beh[C.EVENT_TIME].dt.strftime("%Y-%m-%d").nunique() == simulator.N_DAYS


def test_items_have_side_info_and_power_law_popularity(tables: dict) -> None:
    """Items carry category/brand/shop; the top 10 % of items get a large share of exposures."""
    items, imp = tables[C.ITEMS], tables[C.IMPRESSIONS]
    assert items[C.CATEGORY_ID].notna().all() and items[C.SHOP_ID].notna().all()
    assert items[C.BRAND_ID].notna().mean() > 0.95
    assert items[C.CATEGORY_ID].nunique() >= 20
    per_item = imp[C.ITEM_ID].value_counts()
    top = per_item.iloc[: max(len(per_item) // 10, 1)].sum() / per_item.sum()
    assert top > 0.3, top


def test_target_domains_have_their_own_scope(tables: dict) -> None:
    """Each target domain shows items of a subset of categories, and the subsets differ."""
    imp, items = tables[C.IMPRESSIONS], tables[C.ITEMS]
    cats = imp.merge(items[[C.ITEM_ID, C.CATEGORY_ID]], on=C.ITEM_ID).groupby(C.DOMAIN)[C.CATEGORY_ID]
    scopes = {name: frozenset(c) for name, c in cats}
    all_cats = items[C.CATEGORY_ID].nunique()
    assert all(len(s) < all_cats / 2 for s in scopes.values())
    assert len(set(scopes.values())) == len(scopes)


def test_truth_beside_the_landing_zone(tiny_logs: Path) -> None:
    """_truth/impressions matches the impressions row for row with 0 < p_click < 1, not in the contract."""
    truth = pq.read_table(tiny_logs / simulator.TRUTH_DIR / C.IMPRESSIONS).to_pandas()
    imp = read_table(tiny_logs, C.IMPRESSIONS).to_pandas()
    assert set(simulator.TRUTH_COLUMNS) <= set(truth.columns)
    keys = [C.REQUEST_ID, C.ITEM_ID, C.DOMAIN]
    assert not imp.duplicated(keys).any()
    joined = imp.merge(truth, on=keys, how="inner")
    assert len(joined) == len(imp)
    assert joined[simulator.P_CLICK].between(0, 1, inclusive="neither").all()
    # clicked impressions had a higher true click probability than the others
    assert (
        joined.loc[joined[C.LABEL] == 1, simulator.P_CLICK].mean()
        > 2 * joined.loc[joined[C.LABEL] == 0, simulator.P_CLICK].mean()
    )


def test_oracle_auc_in_range(tiny_logs: Path) -> None:
    """The true p_click ranks each target domain's test day with AUC in [0.70, 0.85]."""
    result = oracle_auc(tiny_logs)
    assert len(result) == 3
    for name, value in result.items():
        assert 0.70 <= value <= 0.85, (name, value)
    sampled = oracle_auc(tiny_logs, sampled=True)  # against logged labels: noisy on tiny, still useful
    assert all(v > 0.65 for v in sampled.values()), sampled


def test_ignoring_the_domain_shift_costs_auc(tiny_logs: Path) -> None:
    """Scoring with true interests but without the target domain's shift loses >= 0.03 AUC."""
    oracle, naive = oracle_auc(tiny_logs), unshifted_auc(tiny_logs)
    for name in oracle:
        assert naive[name] <= oracle[name] - 0.03, (name, naive[name], oracle[name])
        assert naive[name] > 0.5  # the raw interests still carry some signal


def test_onboarding_zone(tiny_logs: Path, tables: dict) -> None:
    """The held-out new domain: own zone, every day, little data, own scope, features partly shared."""
    zone = tiny_logs / simulator.ONBOARD_DIR / simulator.ONBOARD.name
    imp = read_table(zone, C.IMPRESSIONS).to_pandas()
    dom = read_table(zone, C.DOMAINS).to_pandas()
    assert list(dom[C.DOMAIN]) == [simulator.ONBOARD.name] and dom[C.ROLE].item() == C.ROLE_TARGET
    assert set(imp[C.DOMAIN]) == {simulator.ONBOARD.name}
    assert C.list_days(zone) == C.list_days(tiny_logs)
    main_imp = tables[C.IMPRESSIONS]
    assert len(imp) < 0.2 * main_imp[C.DOMAIN].value_counts().min()
    assert set(imp[C.ITEM_ID]) <= set(tables[C.ITEMS][C.ITEM_ID])
    overlap = len(set(imp[C.USER_ID]) & set(tables[C.BEHAVIORS][C.USER_ID])) / imp[C.USER_ID].nunique()
    assert overlap > 0.69
    main_dom = tables[C.DOMAINS]
    feats = C.domain_feature_columns(list(main_dom.columns))
    assert C.domain_feature_columns(list(dom.columns)) == feats
    shared = [f for f in feats if dom[f].item() in set(main_dom[f])]
    assert 0 < len(shared) < len(feats)
    assert (zone / simulator.TRUTH_DIR / C.IMPRESSIONS).is_dir()
    onboard_auc = oracle_auc(tiny_logs, [simulator.ONBOARD.name])[simulator.ONBOARD.name]
    assert 0.65 < onboard_auc < 0.9


def test_summary_matches_files(tiny_logs: Path, tmp_path: Path) -> None:
    """SimulationSummary's row counts equal what is on disk; the manifest names the run."""
    summary = simulator.simulate("tiny", seed=2, out=tmp_path / "s2", n_targets=2)
    assert summary.rows[C.IMPRESSIONS] == read_table(summary.out, C.IMPRESSIONS).num_rows
    assert summary.rows[C.BEHAVIORS] == read_table(summary.out, C.BEHAVIORS).num_rows
    assert simulator.read_manifest(summary.out)["targets"] == [s.name for s in simulator.TARGETS[:2]]
    ctr = {k: v.ctr for k, v in summary.domains.items()}
    imp = read_table(summary.out, C.IMPRESSIONS)
    for name in simulator.read_manifest(summary.out)["targets"]:
        labels = imp.filter(pc.equal(imp.column(C.DOMAIN), name)).column(C.LABEL).to_numpy()
        assert ctr[name] == pytest.approx(labels.mean())


def test_bad_arguments_write_nothing(tmp_path: Path) -> None:
    """An unknown preset or a bad n_targets is a clear error and leaves no output."""
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        simulator.simulate("huge", seed=0, out=tmp_path / "x")
    with pytest.raises(ValueError, match="n_targets"):
        simulator.simulate("tiny", seed=0, out=tmp_path / "x", n_targets=9)
    assert not (tmp_path / "x").exists()


def test_auc_helpers() -> None:
    """auc() and expected_auc() agree with brute-force pair counting."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.3, 300)
    y = (rng.random(300) < p).astype(float)
    s = np.round(p, 2)  # ties
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc(y, s) == pytest.approx(brute)
    w = p[:, None] * (1 - p[None, :])
    np.fill_diagonal(w, 0)
    gt = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    assert expected_auc(p, s) == pytest.approx((w * gt).sum() / w.sum())


def test_source_behaviours_carry_domain_aware_signal(tiny_logs: Path, tables: dict) -> None:
    """From logged source behaviour, mapping categories through the domain's shift beats same-category."""
    manifest = simulator.read_manifest(tiny_logs)
    state = simulator.latent_state(manifest["preset"], manifest["seed"])
    beh, items = tables[C.BEHAVIORS], tables[C.ITEMS]
    beh = beh[beh[C.EVENT_TIME].dt.strftime("%Y-%m-%d") < TEST_DAY]
    cat_of = items.set_index(C.ITEM_ID)[C.CATEGORY_ID] - 1
    counts = np.zeros((state.cfg.n_users, state.cfg.n_categories))
    user_rows = beh[C.USER_ID].to_numpy() - simulator.USER_ID_BASE
    np.add.at(counts, (user_rows, cat_of.reindex(beh[C.ITEM_ID]).to_numpy()), 1)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    for name in simulator.read_manifest(tiny_logs)["targets"]:
        truth = simulator.truth_of_test_day(tiny_logs, name).to_pandas()
        u = truth[C.USER_ID].to_numpy() - simulator.USER_ID_BASE
        c = cat_of.reindex(truth[C.ITEM_ID]).to_numpy()
        p = truth[simulator.P_CLICK].to_numpy()
        naive = expected_auc(p, share[u, c])
        aware = expected_auc(p, (share[u] * state.transfer[name][:, c].T).sum(axis=1))
        assert aware >= naive + 0.05, (name, naive, aware)
