"""How many CPU threads one dacdr process uses: decided here, and only here.

torch (intra-op OpenMP/MKL), the BLAS under numpy and duckdb each default to one thread per core.
On a shared 2-core machine two such processes slow each other down up to ~10x (docs/benchmarks.md),
so every entry point (the CLI, the flows, the serving workers, the tests) calls `configure` once.

Precedence: an explicit `threads` argument (the CLI's `--threads`) > the `DACDR_THREADS` environment
variable (inherited by subprocesses, Prefect workers and BentoML workers) > the default: half the
cores, at least one, at most 8. Half the machine leaves room for a second job; more than 8 threads
gives nothing on the small id-embedding models trained here.
"""

from __future__ import annotations

import os
import sys

ENV = "DACDR_THREADS"
# the BLAS/OpenMP variables read when a library loads: children started after `configure` inherit them
BLAS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def default_threads() -> int:
    """Half the usable cores, within [1, 8], shared among torchrun's local processes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local_procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # set by torchrun
    return max(1, min(8, cores // 2 // local_procs))


def resolve(threads: int | None = None) -> int:
    """The thread count to use: argument, then $DACDR_THREADS, then the default."""
    if threads is None:
        raw = os.environ.get(ENV, "").strip()
        if raw:
            try:
                threads = int(raw)
            except ValueError:
                raise ValueError(f"{ENV}={raw!r} is not an integer") from None
        else:
            threads = default_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


def configure(threads: int | None = None) -> int:
    """Set torch, BLAS and (through the environment) child processes to `resolve(threads)` threads."""
    n = resolve(threads)
    os.environ[ENV] = str(n)
    for var in BLAS_ENV:
        os.environ[var] = str(n)
    # torch reads OMP_NUM_THREADS when it is imported; one already imported is set directly.
    # Importing it here would make every `--help` pay torch's import time.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n


def duckdb_threads() -> int:
    """The thread count a duckdb connection should take (same budget as torch)."""
    return resolve()
