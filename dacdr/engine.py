"""Where the data stages, Feast's compute and training run: `local` (this process) or `ray` (a Ray cluster).

One switch, decided here and only here: the commands' `--engine`, the flows' `engine` parameter.
`local` is the default and is exactly the single-machine path (duckdb, pyarrow, torch in-process);
`ray` runs the same functions on Ray Data / Ray Train. Ray is an optional dependency
(`pip install 'dacdr[ray]'`): nothing imports it unless the engine is `ray`.

Ray attaches to the cluster named by $RAY_ADDRESS (e.g. `ray://head:10001` or `auto`, as KubeRay's
pods set it) and otherwise starts a bounded local instance in-process: `num_cpus` (default: this
process's thread budget, dacdr.threads, raised to what the caller needs, e.g. the Ray Train
workers), a small object store, a short temp dir (Ray's unix sockets live there; a deep path
exceeds the 107-byte socket limit), no dashboard, and every server (GCS, raylet, object manager,
agents, workers) bound to 127.0.0.1: a local instance is for this machine only.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from pathlib import Path

from dacdr.errors import UserError
from dacdr.threads import BLAS_ENV, resolve

LOCAL = "local"
RAY = "ray"
ENGINES = (LOCAL, RAY)
ADDRESS_ENV = "RAY_ADDRESS"
# a local instance's object store: enough for the `demo` preset's partitions, spills to disk beyond
DEFAULT_OBJECT_STORE_BYTES = 512 * 1024**2
MIN_OBJECT_STORE_BYTES = 80 * 1024**2  # Ray refuses less than ~75 MiB
INSTALL_HINT = "Ray is not installed; install it with: pip install 'dacdr[ray]'"
# Ray's switch for the loopback-only node it starts on macOS and Windows: `0` makes its node address
# (the one every server binds) 127.0.0.1 on Linux too. Read when ray is imported, in this process
# and in every Ray process it starts (they inherit the environment).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_installed() -> bool:
    """Whether the `ray` package can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("ray") is not None


def check_engine(engine: str, option: str = "--engine") -> str:
    """`engine` if it is a known engine whose packages are installed, else UserError naming `option`."""
    if engine not in ENGINES:
        raise UserError(f"{option} {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == RAY and not ray_installed():
        raise UserError(f"{option} ray: {INSTALL_HINT}")
    return engine


def check_workers(workers: int, option: str = "--workers") -> int:
    """`workers` if it is a usable Ray Train worker count (>= 1), else UserError naming `option`."""
    if workers < 1:
        raise UserError(f"{option} {workers}: must be >= 1")
    return workers


def worker_env() -> dict[str, str]:
    """Environment every Ray worker process starts with: this process's thread budget per worker task.

    A Ray task or Train worker holds one CPU, so it runs one thread (torch, BLAS, duckdb), as a
    torchrun process does; the driver keeps its own budget.
    """
    return {"DACDR_THREADS": "1", **{var: "1" for var in BLAS_ENV}}


def local_only() -> None:
    """Make a Ray instance started by this process (and its children) bind 127.0.0.1 only.

    Call before `ray` is imported (init_ray does; so must code that imports prefect_ray first). A
    no-op when $RAY_ADDRESS names a cluster: a driver on a cluster node must report its own address.
    """
    if not os.environ.get(ADDRESS_ENV, "").strip():
        os.environ.update(LOOPBACK_ENV)


def _node_is_loopback() -> bool:
    """Whether the node address Ray would start a local instance on is a loopback address."""
    import ray.util

    address = ipaddress.ip_address(ray.util.get_node_ip_address())
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def init_ray(
    num_cpus: int | None = None,
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
    temp_dir: Path | None = None,
    min_cpus: int = 1,
) -> str:
    """Connect this process to Ray once: $RAY_ADDRESS's cluster, else a bounded local instance.

    Returns the address it is connected to. Already connected (a test session's shared instance,
    a Prefect RayTaskRunner's) means nothing to do. `num_cpus` defaults to this process's thread
    budget (dacdr.threads.resolve), at least `min_cpus` (what the caller will ask Ray for at once,
    e.g. one CPU per Ray Train worker: fewer would leave them waiting forever); `temp_dir` to Ray's
    own (/tmp/ray). A local instance binds 127.0.0.1 only (local_only).
    """
    if not ray_installed():
        raise RuntimeError(INSTALL_HINT)
    local_only()
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    runtime_env = {"env_vars": worker_env()}
    address = os.environ.get(ADDRESS_ENV, "").strip()
    if address:
        # a cluster's size and memory are the cluster's: only the workers' environment is ours
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        if object_store_bytes < MIN_OBJECT_STORE_BYTES:
            raise ValueError(
                f"object_store_bytes must be >= {MIN_OBJECT_STORE_BYTES}, got {object_store_bytes}"
            )
        if not _node_is_loopback():  # ray was imported before local_only(): it would bind every interface
            raise RuntimeError(
                "ray was imported before dacdr.engine.local_only() ran, so a local Ray would listen on "
                "every interface; call local_only() before importing ray (or prefect_ray), or set "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
            )
        ray.init(
            num_cpus=max(num_cpus if num_cpus is not None else resolve(), min_cpus),
            num_gpus=0 if not _has_cuda() else None,
            object_store_memory=object_store_bytes,
            _temp_dir=str(temp_dir) if temp_dir is not None else None,
            include_dashboard=False,
            runtime_env=runtime_env,
            log_to_driver=False,
        )
    return ray.get_runtime_context().gcs_address


def check_capacity(workers: int, gpu: bool, option: str = "--workers") -> None:
    """UserError (at once) when the connected Ray cluster has fewer CPUs (or GPUs) than `workers`.

    Each Ray Train worker takes one CPU (and one GPU with `gpu`); short of that, Ray Train would
    wait for the resources forever, at 0 % CPU, printing nothing.
    """
    import ray

    total = ray.cluster_resources()
    where = "$RAY_ADDRESS's cluster" if os.environ.get(ADDRESS_ENV, "").strip() else "the local Ray"
    for kind in ("CPU", "GPU") if gpu else ("CPU",):
        have = int(total.get(kind, 0))
        if have < workers:
            raise UserError(
                f"{option} {workers}: {where} has {have} {kind}(s) and each Ray Train worker takes one; "
                f"ask for at most {have} worker(s) or add {kind}s"
            )


def _has_cuda() -> bool:
    """Whether torch (when already imported) sees a GPU; a local Ray then offers it to Ray Train."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


def shutdown_ray() -> None:
    """Disconnect from Ray (stopping a local instance this process started); no-op when not connected."""
    if not ray_installed():
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()
