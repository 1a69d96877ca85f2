"""Every flow under prefect_test_harness on the tiny preset: the main job, ingest (failure path and
idempotency), daily (re-run releases nothing new), onboard_domain (fail fast, change nothing)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features import contract as C
from flows.common import Layout

from .conftest import PipelineRun


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (symlinks by target), skipping top-level names."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip or not path.is_file():
            continue
        out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def read_artifact(key: str) -> object:
    """The latest Prefect artifact with `key` (its data decoded from JSON when it is a table)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        wanted = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        found = client.read_latest_artifacts(artifact_filter=wanted)
    assert found, f"no artifact with key {key!r}"
    data = found[0].data
    return json.loads(data) if isinstance(data, str) and data[:1] in "[{" else data


def test_pipeline_summary_accounts_for_every_row(tiny_pipeline: PipelineRun) -> None:
    """Rows accepted + quarantined == read per table, over the 11 simulated days, and nothing is lost."""
    rows = tiny_pipeline.summary["rows"]
    assert set(rows) == set(C.TABLES)
    for table, n in rows.items():
        assert n["accepted"] + n["quarantined"] == n["read"], table
    layout = Layout.of(tiny_pipeline.workdir)
    days = tiny_pipeline.summary["days"]  # the closing A/B appends its own days after these
    assert len(days) == 11 and C.list_days(layout.logs, C.IMPRESSIONS)[: len(days)] == days
    curated = sum(pq.read_metadata(p.path).num_rows
                  for d in days for p in C.list_partitions(layout.curated, C.IMPRESSIONS, d))
    assert curated == rows[C.IMPRESSIONS]["accepted"]
    assert "rows (events: all days)" in tiny_pipeline.output and "Prefect UI" in tiny_pipeline.output


def test_pipeline_trains_packages_and_rolls_out_every_domain(tiny_pipeline: PipelineRun) -> None:
    """Three target domains + the onboarded one: a holdout AUC each, a Bento each, and each first model
    promoted exactly when it beats popularity on the holdout by more than 2 s.e. (the offline gate)."""
    import bentoml

    from bento.rollout import production_model

    summary = tiny_pipeline.summary
    auc, oracle = summary["auc"], summary["oracle_auc"]
    assert len(auc) == 4 and set(auc) == set(oracle)
    onboarded = summary["bentos"][-1]["domain"]
    main = [d for d in auc if d != onboarded]
    for domain, value in auc.items():
        # nothing scores the test day better than the simulator's true click probabilities: a model
        # above the oracle would be reading the label (leakage); on tiny the gap is > 0.15 per domain
        assert value < oracle[domain], (domain, value, oracle[domain])
    for domain in main:
        # strictly above chance: a constant (0.5) or inverted (< 0.5) scorer fails; measured 0.56-0.64
        assert auc[domain] > 0.5, (domain, auc[domain])
    # the main domains have enough data that even a 2-epoch model ranks clearly better than chance
    assert sum(auc[d] for d in main) / len(main) > 0.55
    for tag in summary["bentos"]:
        assert str(bentoml.bentos.get(tag["bento"]).tag) == tag["bento"]
    assert len(summary["rollout"]) == 4
    for d in summary["rollout"]:
        assert d["baseline"] == "popularity" and d["auc_diff_se"] > 0, d
        beats = d["auc_diff"] > 2 * d["auc_diff_se"]
        assert d["action"] == ("promote" if beats else "keep"), d["reason"]
        ab = summary["ab"]
        if ab["domain"] != d["domain"]:  # the A/B domain's production is the online decision's (below)
            assert production_model(d["domain"]) == (d["candidate"] if beats else None)


def test_main_job_ends_with_an_ab_test(tiny_pipeline: PipelineRun) -> None:
    """The closing A/B served both arms from one live Bento, logged every answer, reported the lift
    with its interval and decided; production follows the decision."""
    ab = tiny_pipeline.summary["ab"]
    arms = {a["arm"]: a for a in ab["report"]["arms"]}
    assert set(arms) == {"control", "candidate"} and all(a["requests"] > 0 for a in arms.values())
    assert ab["control"] != ab["candidate"]
    lifts = [x for x in ab["report"]["lifts"] if x["arm"] == "candidate"]
    ctr = [x for x in lifts if x["metric"] == "ctr"]
    assert ctr and ctr[0]["low"] <= ctr[0]["lift"] <= ctr[0]["high"]
    action = ab["decision"]["action"]
    assert action in ("promote", "rollback", "keep", "continue")
    from bento.rollout import production_model

    offline = next(d for d in tiny_pipeline.summary["rollout"] if d["domain"] == ab["domain"])
    if action == "promote":
        expected = ab["candidate"]
    elif action == "rollback" and offline["production"] == ab["candidate"]:
        expected = offline["previous"]  # the candidate had been promoted offline: the previous returns
    else:
        expected = offline["production"]  # keep / continue / a rollback of a model never promoted
    assert production_model(ab["domain"]) == expected
    served = list((tiny_pipeline.workdir / "served").rglob("*.parquet"))
    assert served, "the service wrote no served-ranking log"
    # the simulated A/B days (a few hundred requests, not a production day) are validated into the
    # experiment's own lake: in the production lake their row counts would fail the count bound on demo
    layout = Layout.of(tiny_pipeline.workdir)
    ab_days = sorted(set(C.list_days(layout.logs, C.IMPRESSIONS)) - set(tiny_pipeline.summary["days"]))
    assert ab["validated_days"] == len(ab_days) > 0
    reports = layout.experiment_lake(ab["experiment"]) / "reports"
    assert sorted(p.stem for p in reports.glob("dt=*.json")) == [f"dt={d}" for d in ab_days]
    assert not any((layout.lake / "reports" / f"dt={d}.json").exists() for d in ab_days)
    assert "A/B on" in tiny_pipeline.output and "lift" in tiny_pipeline.output


def test_smoke_request_ranks_the_requested_items(tiny_pipeline: PipelineRun) -> None:
    """The served Bento answered the real request: every candidate scored once, best first."""
    smoke = tiny_pipeline.summary["smoke"]
    ranked = smoke["response"]["ranked"]
    assert sorted(r["item_id"] for r in ranked) == sorted(smoke["request"]["item_ids"])
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)


def test_artifacts_published(tiny_pipeline: PipelineRun) -> None:
    """Validation table (counts from the report), metrics table, Bento table and rollout decisions."""
    layout = Layout.of(tiny_pipeline.workdir)
    day = C.list_days(layout.logs, C.IMPRESSIONS)[0]
    table = read_artifact(f"validation-{day}")
    report = json.loads((layout.lake / "reports" / f"dt={day}.json").read_text())
    by_table = {row["table"]: row for row in table}
    assert by_table[C.IMPRESSIONS]["read"] == report["tables"][C.IMPRESSIONS]["read"]
    metrics = read_artifact("holdout-metrics")
    assert {row["domain"] for row in metrics} == set(json.loads(layout.metrics.read_text()))
    assert read_artifact("bentos") and read_artifact("rollout-decisions")


@pytest.fixture
def bad_zone(tiny_pipeline: PipelineRun, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the tiny landing zone whose last day's impressions lack the label column."""
    layout = Layout.of(tiny_pipeline.workdir)
    zone = tmp_path / "bad"
    shutil.copytree(layout.logs, zone, ignore=shutil.ignore_patterns("_*"))
    day = C.list_days(zone, C.IMPRESSIONS)[-1]
    for part in C.list_partitions(zone, C.IMPRESSIONS, day):
        pq.write_table(pq.read_table(part.path).drop_columns([C.LABEL]), part.path)
    return zone, day


def test_ingest_bad_day_fails_and_leaves_curated_untouched(
    tiny_pipeline: PipelineRun, bad_zone: tuple[Path, str]
) -> None:
    """A table-level failure fails the flow run; the curated zone keeps every byte it had."""
    from flows.ingest import ingest

    zone, day = bad_zone
    layout = Layout.of(tiny_pipeline.workdir)
    before = tree_digest(layout.curated)
    state = ingest(str(zone), day, str(layout.root), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=C.LABEL):
        state.result()
    assert tree_digest(layout.curated) == before
    # the failed run recorded its report; re-ingest the good day so later tests see the real history
    assert ingest(str(layout.logs), day, str(layout.root))["status"] == "ok"


def test_ingest_same_day_twice_is_idempotent(tiny_pipeline: PipelineRun) -> None:
    """Re-running a day replaces its outputs: same files, same rows, no duplicates."""
    from flows.ingest import ingest

    layout = Layout.of(tiny_pipeline.workdir)
    day = C.list_days(layout.logs, C.IMPRESSIONS)[3]
    first = ingest(str(layout.logs), day, str(layout.root))
    files_1 = tree_digest(layout.curated)
    second = ingest(str(layout.logs), day, str(layout.root))
    assert tree_digest(layout.curated) == files_1
    assert first["tables"] == second["tables"]
    part = C.partition_dir(layout.curated, C.IMPRESSIONS, day)
    rows = sum(pq.read_metadata(p).num_rows for p in part.glob("*.parquet"))
    assert rows == second["tables"][C.IMPRESSIONS]["accepted"]


def test_daily_rerun_releases_nothing_new(tiny_pipeline: PipelineRun) -> None:
    """daily on an already-processed day: no new model versions; a second run releases nothing."""
    import bentoml

    from flows.daily import daily

    layout = Layout.of(tiny_pipeline.workdir)
    day = C.list_days(layout.logs, C.IMPRESSIONS)[-1]
    main = sorted(json.loads(layout.metrics.read_text()))
    versions = {d: len(bentoml.models.list(f"dacdr-{d}")) for d in main}
    first = daily(str(layout.logs), str(layout.root), dt=day, retrain=False)
    assert first["trained"] is False
    assert {d["action"] for d in first["rollout"]} == {"keep"}
    assert {d: len(bentoml.models.list(f"dacdr-{d}")) for d in main} == versions
    second = daily(str(layout.logs), str(layout.root), dt=day, retrain=False)
    assert "rollout" not in second


@pytest.mark.parametrize(
    ("domain", "zone_name", "message"),
    [
        ("Bad-Name!", "beauty", "invalid domain name"),
        ("brand_new", "missing", "does not exist"),
    ],
)
def test_onboard_bad_request_fails_fast_and_changes_nothing(
    tiny_pipeline: PipelineRun, domain: str, zone_name: str, message: str
) -> None:
    """A bad domain name or a missing landing zone: clear error, workdir unchanged."""
    from flows.onboard import OnboardingError, onboard_domain

    layout = Layout.of(tiny_pipeline.workdir)
    onboard_root = layout.logs / "_onboard"
    zone = next(onboard_root.iterdir()) if zone_name == "beauty" else onboard_root / "no_such_zone"
    before = tree_digest(layout.root, skip=("prefect",))
    with pytest.raises(OnboardingError, match=message):
        onboard_domain(domain, str(zone), str(layout.root))
    assert tree_digest(layout.root, skip=("prefect",)) == before


def test_train_uses_the_gpu_deployment_when_configured(
    tiny_pipeline: PipelineRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DACDR_GPU_DEPLOYMENT set, `train` hands the step to run_deployment (never in-process).

    The named deployment does not exist on the test API, so the flow run fails naming it, and the
    runs folder is untouched: no training happened in this process.
    """
    from flows.common import GPU_DEPLOYMENT_ENV
    from flows.train import train

    layout = Layout.of(tiny_pipeline.workdir)
    before = tree_digest(layout.runs)
    monkeypatch.setenv(GPU_DEPLOYMENT_ENV, "train-step/not-deployed-here")
    state = train(str(layout.root), device="cpu", epochs=1, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="not-deployed-here"):
        state.result()
    assert tree_digest(layout.runs) == before
