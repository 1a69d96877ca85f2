"""`dacdr train --engine ray --workers N`: the same training run (models.run.train) under Ray Train.

Ray Train's TorchTrainer starts N worker processes, sets RANK/WORLD_SIZE/LOCAL_RANK and the torch
process group (gloo on CPU, nccl on GPU) before our loop runs; models.train.setup_distributed then
joins that group exactly as it joins torchrun's, so the loop, the checkpoints (rank 0 writes
checkpoint.pt, last.pt, metrics.jsonl), `--resume`, `evaluate` and serving are unchanged.

On a multi-node cluster `data` and `out` must be paths every worker sees (a shared filesystem or a
mounted bucket, docs/scale-out.md): the workers read the dataset and rank 0 writes the run dir there.
Ray Train's own bookkeeping goes to OUT/ray_train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from dacdr.engine import check_capacity, init_ray

RAY_TRAIN_DIR = "ray_train"  # Ray Train's run bookkeeping, inside the run dir


@dataclass(frozen=True)
class TrainArgs:
    """The arguments of models.run.train, shipped to every Ray Train worker as its loop config."""

    data: str
    out: str
    model: str = "dacdr"
    device: str = "auto"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 2e-3
    patience: int = 1
    resume: bool = False
    embed_dim: int | None = None
    attn_dim: int | None = None
    dropout: float | None = None
    max_batches_per_epoch: int | None = None
    progress: bool = False  # workers' tqdm bars would interleave in the driver's log
    weight_decay: float = 1e-5
    eval_batch_size: int = 8192
    model_overrides: dict | None = None  # `--config`'s model section


def use_gpu(device: str) -> bool:
    """Whether the workers take a GPU each: `cuda`, or `auto` on a cluster that has GPUs."""
    import ray

    if device.startswith("cuda"):
        return True
    return device == "auto" and ray.cluster_resources().get("GPU", 0) > 0


def train_worker(config: dict) -> None:
    """One Ray Train worker: one thread (it holds one CPU), then the ordinary training run."""
    from dacdr.threads import configure
    from models.run import train

    configure(1)
    args = TrainArgs(**config)
    train(Path(args.data), Path(args.out), model=args.model, device=args.device, seed=args.seed,
          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
          resume=args.resume, embed_dim=args.embed_dim, attn_dim=args.attn_dim, dropout=args.dropout,
          max_batches_per_epoch=args.max_batches_per_epoch, progress=args.progress,
          weight_decay=args.weight_decay, eval_batch_size=args.eval_batch_size,
          model_overrides=args.model_overrides)


def train_on_ray(args: TrainArgs, workers: int) -> Path:
    """Run `args` on `workers` Ray Train workers (connecting to Ray first); returns the run dir."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    init_ray(min_cpus=workers)  # a local Ray gets a CPU per worker, even above the thread budget
    gpu = use_gpu(args.device)
    check_capacity(workers, gpu)  # a cluster too small for the workers: one line now, not a silent wait
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = asdict(TrainArgs(**{**asdict(args), "data": str(Path(args.data).resolve()), "out": str(out)}))
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu),
        run_config=RunConfig(name="train", storage_path=str(out / RAY_TRAIN_DIR)),
    )
    trainer.fit()
    return out
