"""Online A/B on the simulator with planted rankers: AUC -> lift, the A/A rejection rate, IPS coverage.

Arms are in-process rankers over the simulated world (features/simulator/arms.py), each against
`popularity` as control (50/50 by user hash), clicked by the responder (examination x p_click):
    .venv/bin/python benchmarks/online_ab.py --preset tiny --seeds 3 --aa-seeds 200 --ips-seeds 100
Prints one JSON object (and a Markdown table) for docs/results.md.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import typer

from bento.ab import KEEP, ab_report
from bento.offpolicy import off_policy_ctr
from features.simulator import Responder, click_probability, examination, latent_state
from features.simulator.arms import (
    SimArm,
    SimService,
    own_ranks,
    popularity_scorer,
    random_scorer,
    true_scorer,
)
from features.simulator.traffic import day_requests, serve_and_click
from models.metrics import expected_auc

app = typer.Typer(add_completion=False)
NOISES = {"oracle": 0.0, "oracle+noise0.5": 0.5, "oracle+noise1": 1.0, "oracle+noise2": 2.0}


def run(world, domain, seed, control, candidate, days, per_day, epsilon=0.0, share=0.5):
    """(joined rows, requests) of `days` of a two-arm test."""
    svc = SimService([SimArm("control", "c", 1 - share, control), SimArm("candidate", "b", share, candidate)],
                     salt=f"s{seed}", epsilon=epsilon, seed=seed)
    resp = Responder(world, seed)
    joined, reqs = [], []
    for d in range(days):
        req = day_requests(world, seed, domain, date(2026, 9, 12) + timedelta(days=d), 11 + d, per_day, 10)
        joined.append(serve_and_click(resp, svc, req)[2])
        reqs.append(req)
    return pa.concat_tables(joined), reqs


def offline_auc(world, domain, scorer, reqs) -> float:
    """Noise-free AUC of a ranker's scores against the true p_click on the served candidates."""
    p, s = [], []
    for r in reqs:
        u, i = r.user_id - 10_000_000, r.item_ids - 500_000_000
        p.append(click_probability(world, domain, np.repeat(u, i.shape[1]), i.ravel()))
        s.append(scorer(u, i).ravel())
    return expected_auc(np.concatenate(p), np.concatenate(s))


@app.command()
def main(preset: str = "tiny", domain: str = "fashion_feed", seeds: int = 3, days: int = 7,
         per_day: int = 2000, aa_seeds: int = 200, ips_seeds: int = 100) -> None:
    """Lift table, A/A rejections and IPS coverage."""
    t0 = time.perf_counter()
    world = latent_state(preset, 0)
    pop = popularity_scorer(world)
    arms = {name: true_scorer(world, domain, noise, seed=1) for name, noise in NOISES.items()}
    arms["random"] = random_scorer(7)
    rows = []
    for name, scorer in arms.items():
        lifts, gmv, aucs = [], [], []
        for seed in range(seeds):
            joined, reqs = run(world, domain, 1000 + seed, pop, scorer, days, per_day)
            rep = ab_report(joined, "control", days * per_day // 4)
            lifts.append(rep.lift("candidate", "ctr"))
            gmv.append(rep.lift("candidate", "gmv_per_1000_requests"))
            aucs.append(offline_auc(world, domain, scorer, reqs) - offline_auc(world, domain, pop, reqs))
        rows.append({"arm": name, "auc_minus_popularity": round(float(np.mean(aucs)), 4),
                     "ctr_lift": [[round(x.lift, 4), round(x.low, 4), round(x.high, 4)] for x in lifts],
                     "gmv_lift": [[round(x.lift, 4), round(x.low, 4), round(x.high, 4)] for x in gmv]})
    noisy = true_scorer(world, domain, 1.0, seed=2)
    rejections = 0
    for seed in range(aa_seeds):
        joined, _ = run(world, domain, seed, noisy, noisy, 4, 1000)
        rejections += int(ab_report(joined, "control", 1500).decisions["candidate"] != KEEP)
    covered = {"ips": 0, "snips": 0}
    cand = true_scorer(world, domain)
    for seed in range(ips_seeds):
        production = true_scorer(world, domain, 1.5)
        joined, reqs = run(world, domain, 200 + seed, production, cand, 4, 1000, 0.3, 0.0)
        logged = joined.filter(pc.equal(joined.column("arm"), "control"))
        u = logged.column("user_id").to_numpy() - 10_000_000
        i = logged.column("item_id").to_numpy() - 500_000_000
        est = off_policy_ctr(logged, cand(u, i[:, None])[:, 0])
        truth = []
        for r in reqs:
            ru, ri = r.user_id - 10_000_000, r.item_ids - 500_000_000
            p = click_probability(world, domain, np.repeat(ru, ri.shape[1]), ri.ravel()).reshape(ri.shape)
            truth.append((p * examination(own_ranks(cand(ru, ri)))).mean())
        ctr = float(np.mean(truth))
        covered["ips"] += int(est.ips_low <= ctr <= est.ips_high)
        covered["snips"] += int(est.snips_low <= ctr <= est.snips_high)
    out = {"preset": preset, "domain": domain, "seeds": seeds, "days": days, "requests_per_day": per_day,
           "arms": rows, "aa": {"seeds": aa_seeds, "rejections": rejections},
           "ips_coverage": {"seeds": ips_seeds, **covered}, "seconds": round(time.perf_counter() - t0, 1),
           "load": os.getloadavg()[0]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    app()
