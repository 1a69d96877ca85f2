"""The `ab-experiment` flow orders start -> report -> decide and records the decision (planted arms)."""

from __future__ import annotations

from pathlib import Path

from features.simulator import latent_state, simulate
from features.simulator.arms import SimArm, SimService, random_scorer, true_scorer
from features.simulator.traffic import simulate_online
from tests.flows.test_flows import read_artifact

DOMAIN = "fashion_feed"


def test_flow_promotes_a_planted_better_candidate(prefect_harness: None, tmp_path: Path) -> None:
    """Logs of a random control vs an oracle candidate under experiment `exp-t`: the flow promotes it,
    the registry's stack and history say so, and the report and decision are Prefect artifacts."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    from bento.registry import locked_registry, read_registry
    from flows.experiment import ab_experiment

    zone = tmp_path / "zone"
    simulate("tiny", seed=0, out=zone, n_days=2, n_targets=1)
    world = latent_state("tiny", 0, 1)
    service = SimService([SimArm("control", "dacdr-fashion_feed:old", 0.5, random_scorer(5)),
                          SimArm("candidate", "dacdr-fashion_feed:new", 0.5, true_scorer(world, DOMAIN))],
                         salt="t", experiment_id="exp-t", seed=1)
    simulate_online(zone, {DOMAIN: service}, days=4, seed=1, requests_per_day=1000, state=world)
    with BentoMLContainer.bentoml_home.patch(str(tmp_path / "home")):
        with locked_registry(DOMAIN) as data:
            data["stack"].append("dacdr-fashion_feed:old")
        out = ab_experiment(workdir=str(tmp_path / "work"), domain=DOMAIN, candidate="dacdr-fashion_feed:new",
                            simulate=False, logs=str(zone), experiment_id="exp-t", horizon_requests=1500)
        reg = read_registry(DOMAIN)
    assert out["decision"]["action"] == "promote", out["report"]["reasons"]
    assert reg["stack"] == ["dacdr-fashion_feed:old", "dacdr-fashion_feed:new"]
    assert [h["action"] for h in reg["history"]] == ["start_experiment", "stop_experiment", "promote"]
    assert "| candidate | ctr |" in str(read_artifact("ab-report-fashion-feed"))
    assert "promote" in str(read_artifact("ab-decision-fashion-feed"))
