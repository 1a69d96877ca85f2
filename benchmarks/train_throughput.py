"""Samples/s of a full DACDR training step (data feed included) at large batch sizes, with peak memory.

Synthetic index tensors with the batch-dict layout of models.spec (NB=5 behaviours, L=50, k=32) and
a 1M-item table (sparse gradients + SparseAdam), fed through models.train.TensorFeed exactly as
training does (seeded permutation, index_select, pinned + non_blocking copies on CUDA).

    python benchmarks/train_throughput.py --device cpu --batch-sizes 1024 4096 8192
    python benchmarks/train_throughput.py --device cuda --batch-sizes 1024 4096 16384 65536 --compile
    python benchmarks/train_throughput.py --dataset DATASET_DIR --batch-sizes 1024 --threads 1

--dataset times real batches instead: rows sampled (seeded) from a `dacdr build-dataset` train split,
with that data's vocabularies and sequence sparsity (on `demo` ~8 % of the B*NB*L slots are real).
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from models.dacdr import DACDR, DACDRConfig
from models.predict import resolve_device
from models.train import TensorFeed, make_optimizers, task_loss


@dataclass
class BenchConfig:
    """Sizes of the synthetic problem."""

    n_items: int = 1_000_000
    n_categories: int = 1_000
    n_brands: int = 20_000
    n_shops: int = 10_000
    n_behaviors: int = 5
    max_len: int = 50
    embed_dim: int = 32
    n_features: int = 3
    steps: int = 5
    warmup: int = 2
    seed: int = 0


def synthetic_tensors(cfg: BenchConfig, rows: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random indices in the batch-dict layout (about 30 % of sequence positions are padding)."""
    shape = (rows, cfg.n_behaviors, cfg.max_len)
    pad = torch.rand(shape, generator=gen) < 0.3

    def seq(n: int) -> torch.Tensor:
        """A (rows, NB, L) int32 index tensor with padding zeros."""
        return torch.randint(2, n, shape, generator=gen, dtype=torch.int32).masked_fill(pad, 0)

    return {
        "user": torch.randint(2, 1_000_000, (rows,), generator=gen),
        "item": torch.randint(2, cfg.n_items, (rows,), generator=gen),
        "category": torch.randint(2, cfg.n_categories, (rows,), generator=gen),
        "brand": torch.randint(2, cfg.n_brands, (rows,), generator=gen),
        "shop": torch.randint(2, cfg.n_shops, (rows,), generator=gen),
        "domain": torch.randint(2, 8, (rows,), generator=gen),
        "domain_feats": torch.randint(2, 10, (rows, cfg.n_features), generator=gen),
        "task": torch.zeros(rows, dtype=torch.int64),
        "seq_item": seq(cfg.n_items),
        "seq_category": seq(cfg.n_categories),
        "seq_brand": seq(cfg.n_brands),
        "seq_shop": seq(cfg.n_shops),
        "seq_value": seq(7),  # value tokens: a handful (stars)
        "label": (torch.rand(rows, generator=gen) < 0.02).float(),
    }


def dataset_tensors(data: Path, rows: int, seed: int) -> tuple[dict[str, torch.Tensor], DACDRConfig]:
    """`rows` seeded rows of a dataset dir's train split, tensorized, and the DACDR config of its spec."""
    import numpy as np

    from models.spec import FeatureSpec, read_manifest
    from models.train import read_split

    train = read_split(data, "train")
    spec = FeatureSpec.fit(train, read_manifest(data))
    take = np.random.default_rng(seed).choice(train.num_rows, rows, replace=rows > train.num_rows)
    return spec.tensorize(train.take(take)), DACDRConfig.from_spec(spec, {})


def build_model(cfg: BenchConfig, compile_dense: bool, mc: DACDRConfig | None = None) -> DACDR:
    """DACDR at benchmark sizes; optionally torch.compile its dense parts (not the sparse tables)."""
    mc = mc or DACDRConfig(n_items=cfg.n_items, n_categories=cfg.n_categories, n_brands=cfg.n_brands,
                           n_shops=cfg.n_shops, n_values=7, n_domains=8, feature_sizes=[10] * cfg.n_features,
                           n_behaviors=cfg.n_behaviors, max_len=cfg.max_len, embed_dim=cfg.embed_dim,
                           attn_dim=cfg.embed_dim)
    model = DACDR(mc)
    if compile_dense:
        # inductor rejects sparse embedding gradients, so only the dense modules are compiled
        model.attn_seq = torch.compile(model.attn_seq)
        model.attn_side = torch.compile(model.attn_side)
        model.encoder = torch.compile(model.encoder)
        model.head = torch.compile(model.head)
    return model


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak RSS on CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_one(cfg: BenchConfig, batch_size: int, device: torch.device, compile_dense: bool,
              data: Path | None) -> dict:
    """Time `steps` training steps (after `warmup`) at one batch size (synthetic or dataset rows)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows = batch_size * (cfg.steps + cfg.warmup)
    if data is None:
        tensors, mc = synthetic_tensors(cfg, rows, gen), None
    else:
        tensors, mc = dataset_tensors(data, rows, cfg.seed)
    feed = TensorFeed(tensors, device)
    model = build_model(cfg, compile_dense, mc).to(device)
    opts = make_optimizers(model, lr=1e-3, weight_decay=0.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    order = torch.randperm(rows, generator=gen)
    use_bf16 = device.type == "cuda"
    t0 = 0.0
    for i, batch in enumerate(feed.batches(order, batch_size, None)):
        if i == cfg.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(batch)
        loss = task_loss(out, batch["label"], batch["task"])
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    return {"batch_size": batch_size, "samples_per_s": batch_size * cfg.steps / dt,
            "step_ms": 1000 * dt / cfg.steps, "peak_mb": peak_memory_mb(device)}


def main() -> None:
    """Parse arguments, run every batch size, print a table and the throughput ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--items", type=int, default=1_000_000, help="item-table rows")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per batch size")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the dense modules")
    ap.add_argument("--dataset", type=Path, default=None, help="time real rows of this dataset dir")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = BenchConfig(n_items=args.items, steps=args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    what = (f"dataset {args.dataset}" if args.dataset else
            f"synthetic L={cfg.max_len} NB={cfg.n_behaviors} k={cfg.embed_dim} items={cfg.n_items:,}")
    print(f"DACDR train step | device {name} | {what} | compile={args.compile}")
    print(f"{'batch':>7} {'samples/s':>11} {'step ms':>9} {'peak MiB':>9}")
    results = []
    for bs in args.batch_sizes:
        r = bench_one(cfg, bs, device, args.compile, args.dataset)
        results.append(r)
        print(f"{bs:>7} {r['samples_per_s']:>11.0f} {r['step_ms']:>9.1f} {r['peak_mb']:>9.0f}", flush=True)
    base = results[0]["samples_per_s"]
    print("throughput vs smallest batch: " + ", ".join(
        f"{r['batch_size']}: {r['samples_per_s'] / base:.2f}x" for r in results))


if __name__ == "__main__":
    main()
