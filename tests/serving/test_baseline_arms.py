"""The baselines an online A/B serves as arms (popularity, dnn_single, category_transfer) score through
the service's Ranker exactly as offline predict() scores the Feast-built rows (no training/serving skew)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.serving.conftest import last_json, serving_env

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from bento.packaging import save_model
from bento.ranker import Query, Ranker
from features import contract as C
from features.feature_repo.sources import ITEMS_FILE
from features.offline import historical_features
from features.store import data_dir
from models.checkpoint import load_checkpoint
from models.predict import predict
from models.run import train

data, feast, out, domain = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
when = pd.Timestamp("2027-01-01T12:00:00+00:00")  # after every snapshot: offline and online see the same one
rows_of = pq.read_table(data / "train.parquet", columns=[C.DOMAIN, C.USER_ID])
mine = rows_of.filter(pc.equal(rows_of.column(C.DOMAIN), domain)).column(C.USER_ID).to_numpy()
users, counts = np.unique(mine, return_counts=True)
user = int(users[np.argmax(counts)])  # the domain's busiest training user: dnn_single knows its id
items = [int(i) for i in pq.read_table(data_dir(feast) / ITEMS_FILE).column(C.ITEM_ID).to_pylist()[::7][:30]]
rows = pd.DataFrame({C.USER_ID: np.full(len(items), user, np.int64), C.DOMAIN: domain,
                     C.ITEM_ID: np.asarray(items, np.int64), C.EVENT_TIME: when})
table = pa.Table.from_pandas(historical_features(feast, rows), preserve_index=False)
table = table.replace_schema_metadata(None)
result, base = {}, None
for name in ("popularity", "dnn_single", "category_transfer"):
    run = train(data, out / name, model=name, device="cpu", seed=0, epochs=1, max_batches_per_epoch=4,
                progress=False)
    tag = save_model(run, domain, dataset_dir=data)
    ranker = Ranker.load(domain, tag, feast) if base is None else base.with_model(tag)
    base = base or ranker
    online = ranker.score([Query.of(user, items, when.to_pydatetime())])[0][0]
    model, spec, _ = load_checkpoint(run / "checkpoint.pt", "cpu")
    offline = np.asarray(predict(model, spec, table, device="cpu"))
    result[name] = {"model": ranker.model_tag, "diff": float(np.abs(online - offline).max()),
                    "distinct": int(np.unique(np.round(offline, 9)).size)}
print(json.dumps(result))
"""


def test_baselines_serve_as_arms_with_offline_scores(tiny_dataset: Path, serving_feast: Path,
                                                     tmp_path: Path) -> None:
    """Each baseline is loaded as an arm beside the first (Ranker.with_model) and its online scores
    equal offline predict() on the same user, items and time; the scores are not all equal."""
    domain = sorted(json.loads((tiny_dataset / "manifest.json").read_text())["target_domains"])[0]
    env = serving_env(tmp_path / "home", serving_feast)
    args = [str(tiny_dataset), str(serving_feast), str(tmp_path / "runs"), domain]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    got = last_json(proc)
    assert set(got) == {"popularity", "dnn_single", "category_transfer"}
    for name, r in got.items():
        assert r["model"].startswith(f"dacdr-{domain}:"), (name, r)
        assert r["diff"] < 1e-5, (name, r)
        assert r["distinct"] > 1, f"{name}: every offline score is identical (degenerate check)"
