"""The rollout registry serialises writers: concurrent read-modify-writes lose nothing (issue 25 item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import Served, last_json, serving_env

DOMAIN = "deals_page"
WRITER = r"""
import sys, time
from pathlib import Path
from bentoml._internal.configuration.containers import BentoMLContainer
from bento import registry as R

home, name, n, locked = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
BentoMLContainer.bentoml_home.set(home)
Path(home, f"ready-{name}").touch()  # start together: wait until both writers are ready
while len(list(Path(home).glob("ready-*"))) < 2:
    time.sleep(0.01)
for i in range(n):
    tag = f"dacdr-deals_page:{name}{i}"
    if locked:
        with R.locked_registry("deals_page") as data:
            time.sleep(0.002)  # widen the read-modify-write window
            data["stack"].append(tag)
            data["history"].append({"action": "promote", "candidate": tag})
    else:  # the same read-modify-write without the lock: what the registry did before
        data = R.read_registry("deals_page")
        time.sleep(0.002)
        data["stack"].append(tag)
        data["history"].append({"action": "promote", "candidate": tag})
        R._write_registry("deals_page", data)
"""


def _race(home: Path, locked: bool, n: int = 60) -> dict:
    """Two writer processes at once; the registry they leave."""
    home.mkdir(parents=True)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(home), name, str(n), "1" if locked else "0"])
        for name in ("a", "b")
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    return json.loads((home / "dacdr_registry" / f"{DOMAIN}.json").read_text())


def test_concurrent_writers_lose_nothing_under_the_lock(tmp_path: Path) -> None:
    """With the lock: 120 entries from 2 x 60 writes; the stack is exactly the history's order."""
    reg = _race(tmp_path / "locked", locked=True)
    assert len(reg["history"]) == 120
    assert reg["stack"] == [h["candidate"] for h in reg["history"]]


def test_the_race_is_real_without_the_lock(tmp_path: Path) -> None:
    """The same workload without the lock loses writes (so the test above can fail)."""
    reg = _race(tmp_path / "unlocked", locked=False)
    assert len(reg["history"]) < 120


ROLLOUTS = r"""
import json, sys
from pathlib import Path
from bento.packaging import save_model

from bento.rollout import rollout

run, domain, auc, n = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
tags = [save_model(run, domain, holdout_auc=auc + i / 1000) for i in range(n)]
rollout(domain, tags[0], auc)  # the first production model
print(json.dumps(tags))
"""
ROLL = r"""
import json, sys
from bento.rollout import rollout
d = rollout(sys.argv[1], sys.argv[2], float(sys.argv[3]))
print(json.dumps(d.to_dict()))
"""


def test_two_concurrent_rollouts_both_recorded(served: Served, tmp_path: Path) -> None:
    """Two `rollout`s of different candidates at the same moment: both decisions in the history, and
    production is the stack's top, consistent with the last promotion recorded."""
    env = serving_env(tmp_path / "home", served.feast)
    made = subprocess.run([sys.executable, "-c", ROLLOUTS, str(served.run), served.domain, "0.7", "3"],
                          env=env, capture_output=True, text=True, timeout=300)
    tags = last_json(made)
    assert isinstance(tags, list) and len(set(tags)) == 3
    procs = [subprocess.Popen([sys.executable, "-c", ROLL, served.domain, tag, auc], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag, auc in ((tags[1], "0.80"), (tags[2], "0.90"))]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    reg = json.loads((tmp_path / "home" / "dacdr_registry" / f"{served.domain}.json").read_text())
    assert len(reg["history"]) == 3
    promoted = [h["candidate"] for h in reg["history"] if h["action"] == "promote"]
    assert reg["stack"] == promoted
    assert set(reg["stack"][1:]) <= {tags[1], tags[2]} and reg["stack"][0] == tags[0]


@pytest.mark.parametrize("share", [1.5, -0.1])
def test_experiment_shares_are_checked(tmp_path: Path, share: float) -> None:
    """start_experiment refuses shares outside [0, 1] with one clear line."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    from bento.registry import RolloutError, locked_registry, start_experiment

    with BentoMLContainer.bentoml_home.patch(str(tmp_path)):
        with locked_registry(DOMAIN) as data:
            data["stack"].append("dacdr-deals_page:v1")
        with pytest.raises(RolloutError, match="share"):
            start_experiment(DOMAIN, "dacdr-deals_page:v2", share=share)


def test_start_arms_splits_users_equally_over_every_arm(tmp_path: Path) -> None:
    """start_arms: production as control plus three candidates, a quarter each; the service's parser
    takes it and users land on all four arms; an arm named like the control is refused."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    from bento.arms import Experiment, assign
    from bento.registry import RolloutError, locked_registry, start_arms, stop_experiment

    with BentoMLContainer.bentoml_home.patch(str(tmp_path)):
        with pytest.raises(RolloutError, match="no production model"):
            start_arms(DOMAIN, {"a": "dacdr-deals_page:a"})
        with locked_registry(DOMAIN) as data:
            data["stack"].append("dacdr-deals_page:prod")
        cands = {"a": "dacdr-deals_page:a", "b": "dacdr-deals_page:b", "c": "dacdr-deals_page:c"}
        exp = start_arms(DOMAIN, cands, salt="s")
        stop_experiment(DOMAIN)
        with pytest.raises(RolloutError, match="repeat"):
            start_arms(DOMAIN, {"control": "dacdr-deals_page:a"})
    assert [(a["name"], a["model_tag"], a["share"]) for a in exp["arms"]] == [
        ("control", "dacdr-deals_page:prod", 0.25), *((n, t, 0.25) for n, t in cands.items())]
    parsed = Experiment.parse(exp)
    counts: dict[str, int] = {}
    for user in range(4000):
        arm = assign(parsed, user).name
        counts[arm] = counts.get(arm, 0) + 1
    assert set(counts) == {"control", "a", "b", "c"} and all(850 < n < 1150 for n in counts.values())
