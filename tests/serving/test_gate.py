"""The offline gate: paired-bootstrap non-inferiority, and a first model must beat popularity by > 2 s.e."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.serving.conftest import Served, last_json, serving_env

GATE = r"""
import json, sys
from pathlib import Path
import numpy as np
from bento.packaging import save_model
from bento.rollout import Holdout, checkpoint_of, rollout

run, domain = Path(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
n = 6000
users = rng.integers(0, 600, n)
p = rng.uniform(0.01, 0.4, n)
labels = (rng.random(n) < p).astype(float)
tags = {k: save_model(run, domain, holdout_auc=0.5 + i / 100) for i, k in enumerate(
    ["noise", "good", "good_too", "bad"])}
planted = {"noise": rng.random(n), "good": p + rng.normal(0, 0.05, n), "good_too": p + rng.normal(0, 0.05, n),
           "bad": rng.random(n)}
by_path = {str(checkpoint_of(t, domain)[1]): planted[k] for k, t in tags.items()}
holdout = Holdout(labels, users, np.zeros(n), lambda path: by_path[str(path)])
steps = [rollout(domain, tags[k], holdout).to_dict() for k in ("noise", "good", "good_too", "bad")]
print(json.dumps({"tags": tags, "steps": steps}))
"""


def test_offline_gate_on_planted_scores(served: Served, tmp_path: Path) -> None:
    """A noise first model is kept out (it does not beat popularity), a good one goes in, an equally good
    candidate passes the non-inferiority margin, a noise candidate does not; figures are recorded."""
    env = serving_env(tmp_path / "home", served.feast)
    proc = subprocess.run([sys.executable, "-c", GATE, str(served.run), served.domain], env=env,
                          capture_output=True, text=True, timeout=300)
    out = last_json(proc)
    steps, tags = out["steps"], out["tags"]
    reasons = [s["reason"] for s in steps]
    assert [s["action"] for s in steps] == ["keep", "promote", "promote", "keep"], reasons
    noise, good, good_too, bad = steps
    assert noise["baseline"] == "popularity" and noise["production"] is None
    assert good["baseline"] == "popularity" and good["auc_diff"] > 2 * good["auc_diff_se"] > 0
    assert good_too["baseline"] == tags["good"] and good_too["auc_diff"] >= -2 * good_too["auc_diff_se"]
    assert bad["auc_diff"] < -2 * bad["auc_diff_se"] and bad["production"] == tags["good_too"]
