"""The trainer: a built model, its feature spec and tensors in; epochs, early stopping, resume, DDP out.

It never looks a name up in the zoo: models.run builds the model and calls fit.

Run dir layout and progress lines: models.run_dir.
Works unchanged under `torchrun --nproc_per_node=N` (gloo on CPU, nccl on GPU; only rank 0 writes).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from models.checkpoint import atomic_save, checkpoint_dict, load_file, save_checkpoint
from models.metrics import auc, rmse
from models.predict import predict_tensors
from models.run_dir import BEST, LAST, METRICS, epoch_line, log
from models.spec import FeatureSpec, trim_padding

SPLITS = ("train", "validation", "test")


@dataclass
class TrainConfig:
    """Everything that shapes one training run (saved in the checkpoint meta)."""

    model: str = "dacdr"
    device: str = "auto"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 1  # epochs without validation improvement before stopping
    eval_batch_size: int = 8192
    max_batches_per_epoch: int | None = None  # cap (smoke tests, DDP checks); None = full epoch
    progress: bool = True
    # validate the untrained model first and keep it if no epoch beats it: a model that starts at a
    # closed form (DACDR's prior) then never ends below that closed form on validation
    validate_start: bool = False


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def read_split(data: Path, split: str):  # -> pa.Table
    """One split of a dataset dir as an arrow Table."""
    path = Path(data) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split {split!r} missing from dataset {data}")
    return pq.read_table(path)


class TensorFeed:
    """Pre-built tensors served in batches by a permutation (no per-row Python in the loop)."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        """Keep the tensors on CPU; each gathered batch is pinned before an async copy to a GPU."""
        self.device = device
        self.pin = device.type == "cuda"
        self.tensors = tensors
        self.n = len(tensors["item"])

    def batches(self, order: torch.Tensor, batch_size: int, max_batches: int | None):
        """Yield device batches following `order` (int64 row indices)."""
        n_batches = math.ceil(len(order) / batch_size)
        if max_batches is not None:
            n_batches = min(n_batches, max_batches)
        for i in range(n_batches):
            idx = order[i * batch_size: (i + 1) * batch_size]
            batch = trim_padding({k: v.index_select(0, idx) for k, v in self.tensors.items()})
            if self.pin:
                batch = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
            yield batch


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """This rank's row order for an epoch: a seeded permutation, padded to a multiple of world, sharded."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if world > 1:
        pad = (-n) % world  # repeat the head so every rank gets the same number of rows
        perm = torch.cat([perm, perm[:pad]])
        perm = perm[rank::world]
    return perm


# ---------------------------------------------------------------------------------------------
# loss, validation score
# ---------------------------------------------------------------------------------------------


def task_loss(out: torch.Tensor, label: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits on ctr rows, MSE on rating rows, averaged over the batch."""
    out = out.float()
    bce = F.binary_cross_entropy_with_logits(out, label, reduction="none")
    mse = (out - label) ** 2
    return torch.where(task == 0, bce, mse).mean()


def validation_score(spec: FeatureSpec, t: dict[str, torch.Tensor], pred: np.ndarray) -> dict:
    """Per-domain metrics and the selection score: mean per-domain AUC over ctr domains (higher is
    better) when any ctr domain is present, else RMSE over rating rows (lower is better)."""
    dom = t["domain"].numpy()
    task = t["task"].numpy()
    label = t["label"].numpy()
    per_domain: dict[str, float] = {}
    for di in np.unique(dom):
        name = spec.domains.values[di - 2] if di >= 2 else "<unknown>"
        m = dom == di
        per_domain[name] = auc(label[m], pred[m]) if task[m][0] == 0 else rmse(label[m], pred[m])
    ctr_aucs = [v for d, v in per_domain.items() if spec.domain_tasks.get(d) == "ctr" and not math.isnan(v)]
    if (task == 0).any():
        value = float(np.mean(ctr_aucs)) if ctr_aucs else float("nan")
        return {"name": "mean_domain_auc", "value": value, "higher_is_better": True, "per_domain": per_domain}
    value = rmse(label[task == 1], pred[task == 1])
    return {"name": "rmse", "value": value, "higher_is_better": False, "per_domain": per_domain}


def improved(score: dict, best: float | None) -> bool:
    """Whether `score` beats the best so far (NaN never improves)."""
    v = score["value"]
    if math.isnan(v):
        return best is None
    if best is None or math.isnan(best):
        return True
    return v > best if score["higher_is_better"] else v < best


# ---------------------------------------------------------------------------------------------
# optimizers, distributed, RNG
# ---------------------------------------------------------------------------------------------


def make_optimizers(model: nn.Module, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
    """SparseAdam for sparse-gradient embeddings (cost follows the batch), AdamW for the dense rest.

    Only parameters with requires_grad are optimised (fine-tuning freezes the others).
    """
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse}
    sparse = [p for p in model.parameters() if p.requires_grad and id(p) in sparse_ids]
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    opts: list[torch.optim.Optimizer] = []
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=lr))
    if dense:
        opts.append(torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay))
    return opts


@dataclass
class DistInfo:
    """Rank, world size and whether this process set up the process group."""

    rank: int
    world: int
    local_rank: int
    owns_group: bool


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(0, 1, 0, False)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, owns)


def rng_state() -> dict:
    """Torch RNG states (CPU and CUDA) for bit-identical resume."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state saved."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def json_safe(obj: object) -> object:
    """A JSON round trip: plain types only (weights_only checkpoints accept them)."""
    return json.loads(json.dumps(obj, default=str))


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Keep only the metrics rows of epochs last.pt knows (<= last_epoch), rewritten atomically.

    A row is appended before last.pt is saved: a crash in between leaves a row for an epoch the
    resumed run trains again, which would appear twice. A torn last line is dropped too.
    """
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= last_epoch:
            keep.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in keep))
    tmp.replace(path)


def fit(
    model: nn.Module,
    model_name: str,
    spec: FeatureSpec,
    train_t: dict[str, torch.Tensor],
    val_t: dict[str, torch.Tensor],
    out: Path,
    cfg: TrainConfig,
    device: torch.device,
    meta: dict,
    resume: bool,
) -> Path:
    """The epoch loop shared by train and finetune: feed, step, validate, checkpoint, early stop."""
    from tqdm import tqdm

    out = Path(out)
    di = setup_distributed(device)
    is_main = di.rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    model.to(device)
    opts = make_optimizers(model, cfg.lr, cfg.weight_decay)
    start_epoch, best, bad_epochs = 0, None, 0
    if resume and (out / LAST).is_file():
        st = load_file(out / LAST)
        model.load_state_dict(st["model"])
        for opt, s in zip(opts, st["optimizers"], strict=True):
            opt.load_state_dict(s)
        set_rng_state(st["rng"])
        start_epoch, best, bad_epochs = st["epoch"] + 1, st["best"], st["bad_epochs"]
        if is_main:
            truncate_metrics(out / METRICS, st["epoch"])
        if st["stopped"]:
            start_epoch = cfg.epochs  # the run had already stopped early: nothing left to do
    elif is_main and (out / METRICS).exists():
        (out / METRICS).unlink()  # a fresh run does not append to an old run's metrics
    net: nn.Module = model
    if di.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    feed = TensorFeed(train_t, device)
    use_bf16 = device.type == "cuda"
    stopped = False
    if cfg.validate_start and start_epoch == 0:
        score = validation_score(spec, val_t, predict_tensors(model, val_t, cfg.eval_batch_size, device))
        if not math.isnan(score["value"]):
            best = score["value"]
            if is_main:
                m = {**meta, "epoch": -1, "val_metric": score["name"], "val_value": score["value"],
                     "val_per_domain": score["per_domain"], "train_config": asdict(cfg)}
                save_checkpoint(out / BEST, model, model_name, spec, json_safe(m))
                log.info("  %s start: val %s %.4f", model_name, score["name"], score["value"])
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = epoch_order(feed.n, cfg.seed, epoch, di.rank, di.world)
        n_batches = math.ceil(len(order) / cfg.batch_size)
        if cfg.max_batches_per_epoch is not None:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)
        show = cfg.progress and is_main
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}", disable=not show, leave=False)
        t0, seen, loss_sum = time.perf_counter(), 0, torch.zeros((), device=device)
        for batch in feed.batches(order, cfg.batch_size, cfg.max_batches_per_epoch):
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                pred = net(batch)
            loss = task_loss(pred, batch["label"], batch["task"])
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            bs = len(batch["label"])
            seen += bs
            loss_sum += loss.detach() * bs
            bar.update(1)
            if bar.n % 20 == 0 or bar.n == n_batches:  # .item() syncs a GPU: only now and then
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}",
                                sps=f"{seen / (time.perf_counter() - t0):.0f}")
        bar.close()
        train_s = time.perf_counter() - t0
        val_pred = predict_tensors(model, val_t, cfg.eval_batch_size, device)
        score = validation_score(spec, val_t, val_pred)
        better = improved(score, best)
        if better:
            best, bad_epochs = score["value"], 0
        else:
            bad_epochs += 1
        stopped = bad_epochs >= cfg.patience
        if is_main:
            row = {"epoch": epoch, "train_loss": loss_sum.item() / max(seen, 1),
                   "samples_per_s": seen * di.world / train_s, "train_s": train_s,
                   "val_" + score["name"]: score["value"], "val_per_domain": score["per_domain"],
                   "best": better}
            with open(out / METRICS, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            tuned = meta.get("finetune_domain")
            label = f"{model_name} fine-tune {tuned}" if tuned else model_name
            log.info("  %s", epoch_line(label, row, cfg.epochs))
            if better:
                m = {**meta, "epoch": epoch, "val_metric": score["name"], "val_value": score["value"],
                     "val_per_domain": score["per_domain"], "train_config": asdict(cfg)}
                save_checkpoint(out / BEST, model, model_name, spec, json_safe(m))
            atomic_save(
                {"model": model.state_dict(), "optimizers": [o.state_dict() for o in opts],
                 "rng": rng_state(),
                 "epoch": epoch, "best": best, "bad_epochs": bad_epochs, "stopped": stopped,
                 "checkpoint": checkpoint_dict(model, model_name, spec, json_safe(meta))},
                out / LAST,
            )
        if stopped:
            break
    if di.world > 1:
        dist.barrier()
        if di.owns_group:
            dist.destroy_process_group()
    return out


def init_output_bias(model: nn.Module, train_t: dict[str, torch.Tensor]) -> None:
    """Start a DACDR head at the training base rate (logit of the ctr label mean).

    With ~2 % positives a zero-bias head spends its first hundreds of steps learning the base rate,
    and those large early gradients scramble the embeddings.
    """
    from models.dacdr import DACDR

    ctr = train_t["task"] == 0
    if not isinstance(model, DACDR) or model.cfg.prior or not ctr.any():
        return  # with the prior the base rate is in the prior's table already
    rate = float(train_t["label"][ctr].mean().clamp(1e-4, 1 - 1e-4))
    with torch.no_grad():
        model.head[-1].bias.fill_(math.log(rate / (1 - rate)))
