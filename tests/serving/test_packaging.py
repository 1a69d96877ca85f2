"""Model store entry, Bento and rollout/rollback, against a real BentoML store (in subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import Served, last_json, run_cli, serving_env


def _bentoml_json(args: list[str], env: dict[str, str]) -> dict:
    """`bentoml ARGS -o json` parsed."""
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", *args, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_model_store_entry_is_self_describing(served: Served) -> None:
    """dacdr-<domain> holds the checkpoint and carries data range, holdout AUC, feature service, base."""
    info = _bentoml_json(["models", "get", served.model_tag], served.env())
    assert info["name"] == f"dacdr-{served.domain}"
    assert info["labels"]["domain"] == served.domain
    assert info["labels"]["feature_service"] == "dacdr_v1"
    meta = info["metadata"]
    assert meta["feature_service"] == "dacdr_v1"
    assert 0.0 <= meta["holdout_auc"] <= 1.0
    assert meta["training_data"]["days"]["train"], meta["training_data"]
    assert "base_model" in info["labels"]
    model_dir = served.home / "models" / f"dacdr-{served.domain}" / served.model_tag.split(":")[1]
    assert (model_dir / "checkpoint.pt").is_file()


def test_bento_pins_domain_and_model(served: Served) -> None:
    """Bento dacdr-<domain> stores the domain/model as arguments and bundles the model."""
    info = _bentoml_json(["get", served.bento_tag], served.env())
    assert info["name"] == f"dacdr-{served.domain}"
    assert info["args"]["domain"] == served.domain
    assert info["args"]["model_tag"] == served.model_tag
    assert served.model_tag in [m["tag"] for m in info["models"]]


ROLLOUT_SCRIPT = r"""
import json, sys
from pathlib import Path
from bento.packaging import save_model
from bento.rollout import RolloutError, rollout, rollback, production_model, holdout_auc

run, domain, dataset = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
a = save_model(run, domain, holdout_auc=0.70)
b = save_model(run, domain, holdout_auc=0.60)
out = {"a": a, "b": b, "steps": []}
def step(d):
    out["steps"].append({**d.to_dict(), "now": production_model(domain)})
step(rollout(domain, a, 0.70))            # first model: always promoted
step(rollout(domain, b, 0.60))            # worse than production's recorded 0.70: kept out
step(rollout(domain, b, 0.75))            # better: promoted, a kept as previous
step(rollback(domain))                    # back to a
try:
    rollback(domain)
    out["second_rollback"] = "no error"
except RolloutError as exc:
    out["second_rollback"] = str(exc)
step(rollout(domain, b, holdout_auc(dataset, "test", domain)))   # same checkpoint, same holdout: equal
try:
    rollout("other_domain", a, 0.9)
    out["foreign"] = "no error"
except RolloutError as exc:
    out["foreign"] = str(exc)
print(json.dumps(out))
"""


def test_rollout_promotes_only_when_not_worse_and_rolls_back(
    served: Served, tiny_dataset: Path, tmp_path: Path
) -> None:
    """First model promoted; worse kept out; better promoted; rollback restores; same holdout compares."""
    env = serving_env(tmp_path / "bentoml_home", served.feast)
    proc = subprocess.run(
        [sys.executable, "-c", ROLLOUT_SCRIPT, str(served.run), served.domain, str(tiny_dataset)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = last_json(proc)
    a, b, steps = out["a"], out["b"], out["steps"]
    assert [s["action"] for s in steps] == ["promote", "keep", "promote", "rollback", "promote"]
    assert [s["now"] for s in steps] == [a, a, b, a, b]
    assert steps[1]["production_auc"] == pytest.approx(0.70) and steps[1]["promoted"] is False
    assert steps[2]["previous"] == a and steps[2]["promoted"] is True
    assert "no previous model" in out["second_rollback"]
    same = steps[4]
    assert same["candidate_auc"] == pytest.approx(same["production_auc"], abs=1e-12)
    assert 0.0 < same["candidate_auc"] < 1.0
    assert "not a model of domain 'other_domain'" in out["foreign"]
    registry = json.loads(
        (tmp_path / "bentoml_home" / "dacdr_registry" / f"{served.domain}.json").read_text()
    )
    assert registry["stack"] == [a, b] and len(registry["history"]) == 5


def test_cli_rejects_bad_rollout_arguments(served: Served) -> None:
    """`dacdr rollout` needs exactly one of --dataset/--auc and says so."""
    proc = run_cli(["rollout", "--domain", served.domain, "--model", served.model_tag], served.env())
    assert proc.returncode != 0
    assert "exactly one of --dataset or --auc" in proc.stderr + proc.stdout
