"""A run dir's file names, and a run's progress lines and end summary (from its log and metrics.jsonl).

Run dir layout: checkpoint.pt (best model, models.checkpoint), last.pt (resume state: model,
optimizers, RNG, early-stopping state), metrics.jsonl (one JSON line per epoch). models.train writes
them and logs one INFO line per epoch (epoch_line) to `log`; the CLI commands print those lines with
echo_progress, and read a finished run back with epoch_lines and summarize_run.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

LAST = "last.pt"
BEST = "checkpoint.pt"
METRICS = "metrics.jsonl"
# the trainer's one INFO line per epoch: echo_progress prints them, flows.run_logs sends them to Prefect
EPOCH_LOGGER = "models.train"  # named after the trainer that writes to it
log = logging.getLogger(EPOCH_LOGGER)


def epoch_line(label: str, row: dict, epochs: int) -> str:
    """One metrics.jsonl row as a progress line: `dacdr epoch 2/10: 51,234 samples/s, ... (best)`."""
    metric = next(k for k in row if k.startswith("val_") and k != "val_per_domain")
    best = " (best)" if row["best"] else ""
    return (f"{label} epoch {row['epoch'] + 1}/{epochs}: {row['samples_per_s']:,.0f} samples/s, "
            f"train loss {row['train_loss']:.4f}, val {metric.removeprefix('val_')} {row[metric]:.4f}{best}")


def epoch_lines(run: Path, label: str, epochs: int) -> list[str]:
    """A finished run's epoch lines, read back from its metrics.jsonl (a run trained elsewhere, e.g. Ray)."""
    path = Path(run) / METRICS
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    return [epoch_line(label, row, epochs) for row in rows if "best" in row]


class _EchoHandler(logging.Handler):
    """Print records on the current sys.stdout (looked up per record, so captured output works)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the formatted record as one line."""
        print(self.format(record), file=sys.stdout, flush=True)


def echo_progress() -> None:
    """Print the per-epoch lines of this module on stdout (idempotent; the CLI commands call it)."""
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
    log.setLevel(logging.INFO)
    log.propagate = False  # an application's root handlers would print each line twice


@dataclass(frozen=True)
class RunSummary:
    """How a run ended, read back from its metrics.jsonl."""

    run: Path
    epochs_run: int
    best_epoch: int | None  # 0-based, as in metrics.jsonl; None when no epoch ran
    metric: str
    value: float
    stop: str  # why it stopped: early stopping or the epoch cap

    def render(self) -> str:
        """Two lines: best epoch, metric and stop reason; where the run lies."""
        if self.best_epoch is None:
            head = f"no epoch trained ({self.stop})"
            if self.stop.startswith("a closed-form fit"):  # counted, not trained: no last.pt to resume
                return f"{head}\nrun: {self.run} ({BEST}, {METRICS})"
        else:
            head = (f"best epoch {self.best_epoch + 1} of {self.epochs_run} run: "
                    f"{self.metric} {self.value:.4f} on validation; stopped by {self.stop}")
        return f"{head}\nrun: {self.run} ({BEST} = best epoch, {LAST} for --resume, {METRICS})"


def summarize_run(run: Path, epochs: int, patience: int) -> RunSummary:
    """The summary of a finished run dir trained with `epochs` and `patience` (see RunSummary)."""
    path = Path(run) / METRICS
    lines = path.read_text().splitlines() if path.is_file() else []
    logged = [json.loads(line) for line in lines if line.strip()]
    rows = [r for r in logged if "best" in r]  # epoch rows (a closed-form baseline logs one other row)
    if not rows:
        chosen = logged[0].get("closed_form") if logged else None
        why = (f"a closed-form fit, chosen on validation: {chosen}" if chosen is not None
               else f"the epoch cap: nothing left of {epochs} epochs")
        return RunSummary(Path(run), 0, None, "", math.nan, why)
    metric = next(k for k in rows[0] if k.startswith("val_") and k != "val_per_domain")
    best = max((r for r in rows if r["best"]), key=lambda r: r["epoch"], default=rows[0])
    after_best = sum(1 for r in rows if r["epoch"] > best["epoch"])
    if after_best >= patience:
        stop = f"early stopping ({after_best} epoch(s) without a validation gain, patience {patience})"
    else:
        stop = f"the epoch cap ({epochs} epochs)"
    name = metric.removeprefix("val_")
    return RunSummary(Path(run), len(rows), best["epoch"], name, float(best[metric]), stop)
