"""Soak: a served Bento under closed-loop load while its online store is replaced or Redis restarts.

Reuses benchmarks/serving.py's prepared workdir, starts `bentoml serve` with the served-ranking log
on and drives /rank (100 candidates) with C closed-loop clients for --seconds. In the middle,
--backend sqlite: the operator replaces the store file (`rm; cp`) the server reads (materialized up
to an earlier day) by the latest store, whose users differ; --backend redis: a private
redis-server is SIGKILLed, restarted empty after --outage-seconds and `dacdr features materialize`
recovers it. Every answer is judged against Ranker.score in-process over the store current at its
time (scores and cold_start); errors must fall inside the fault window, each within 1 s; the
workers' RSS is sampled; after SIGTERM the served log's rows on disk are counted against the items
served. Prints one JSON summary and a Markdown block. Example:

    .venv/bin/python benchmarks/soak.py --workdir /tmp/bench_serving --backend sqlite --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from served_log import rows_on_disk  # noqa: E402  # the sibling benchmarks' helpers
from serving import add_prepare_args, prepared, start_server, stop_server, workload  # noqa: E402
from soak_judge import Log, Reference, judge  # noqa: E402

from dacdr.processes import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAIL_FAST_S = 1.0  # the target: every failed request fails within this
RSS_EVERY_S = 5.0
TIMEOUT_S = 10.0  # per request: a slow failure is measured, not cut short


async def soak(url: str, queries: list[dict], refs: tuple[Reference, Reference], c: int, seconds: float,
               log: Log) -> None:
    """`c` closed-loop clients on /rank for `seconds`; each answer judged against both references."""
    import httpx

    old, new = refs
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)

    async def client(http: httpx.AsyncClient, k: int) -> None:
        """One closed-loop client."""
        while time.monotonic() < deadline:
            i = k % len(queries)
            t0 = time.monotonic()
            try:
                r = await http.post("/rank", json=queries[i])
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            t1 = time.monotonic()
            log.codes[code] = log.codes.get(code, 0) + 1
            judged = (False, False, False)
            if code == "200":
                body = r.json()
                items = np.array([x["item_id"] for x in body["ranked"]], dtype=np.int64)
                scores = np.array([x["score"] for x in body["ranked"]], dtype=np.float64)
                cold = bool(body["cold_start"])
                judged = (old.matches(i, items, scores, cold), new.matches(i, items, scores, cold), cold)
                log.served_items += len(items)
            log.rows.append((t0, t1, code == "200", *judged, i))
            k += c

    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as http:
        await asyncio.gather(*(client(http, k) for k in range(c)))


def bento_is_current(tag: str) -> bool:
    """Whether the Bento's copy of the product code is this checkout's (the server runs the copy)."""
    import bentoml

    src = Path(bentoml.bentos.get(tag).path) / "src"
    copies = [p for pkg in ("bento", "features", "models") for p in (src / pkg).rglob("*.py")]

    def same(copy: Path) -> bool:
        """The checkout holds this file with the same bytes."""
        mine = REPO / copy.relative_to(src)
        return mine.is_file() and mine.read_bytes() == copy.read_bytes()

    return bool(copies) and all(same(p) for p in copies)


def rss_sampler(pid: int, every: float, stop: threading.Event, out: list[tuple[float, float, float]]) -> None:
    """Every `every` s: (time, workers' RSS MiB, whole server tree's RSS MiB) until `stop` is set."""
    import psutil

    root = psutil.Process(pid)
    while not stop.is_set():
        try:
            kids = root.children(recursive=True)
            workers = sum(p.memory_info().rss for p in kids if "bentoml" in " ".join(p.cmdline()))
            tree = root.memory_info().rss + sum(p.memory_info().rss for p in kids)
            out.append((time.monotonic(), workers / 2**20, tree / 2**20))
        except psutil.Error:  # a process ended between the listing and the read
            pass
        stop.wait(every)


def sqlite_stores(tags: dict[str, str], soak_dir: Path) -> tuple[Path, Path]:
    """(the server's store: a copy materialized up to the middle snapshot day, the latest store's file)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features import contract as C
    from features import materialize
    from features import store as fs
    from features.feature_repo.sources import USER_PACKED_FILE

    live = soak_dir / "feast"
    shutil.copytree(tags["feast"], live)
    path = fs.data_dir(live) / USER_PACKED_FILE
    snaps = pc.unique(pq.read_table(path, columns=[C.SNAPSHOT_TIME]).column(0))
    mid = pc.sort_indices(snaps)[len(snaps) // 2].as_py()  # the middle snapshot: users active since differ
    fs.online_store_file(live).unlink()
    fs.apply(live)  # the file again, its tables empty
    materialize.materialize(live, end=snaps[mid].as_py())
    return live, fs.online_store_file(Path(tags["feast"]))


def start_redis(port: int, folder: Path) -> subprocess.Popen:
    """A private redis-server (127.0.0.1:port, its own dir, no persistence: a restart is empty)."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "no"]
    proc = subprocess.Popen(["redis-server", *args, "--save", ""], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"redis-server on {port} did not start")


def redis_store(tags: dict[str, str], soak_dir: Path, port: int) -> Path:
    """A Feast store over the prepared logs whose online store is the redis-server on `port`, materialized."""
    from features import materialize
    from features import store as fs

    live = soak_dir / "feast"
    online = fs.OnlineConfig(kind=fs.ONLINE_REDIS, redis_url=f"redis://127.0.0.1:{port}/0")
    fs.build(tags["logs"], live, online=online)
    fs.apply(live)
    materialize.materialize(live)
    return live


def sink_fault(root: Path, at: float, seconds: float) -> None:
    """At monotonic time `at`, the served log's folder becomes a file for `seconds` (writes fail)."""
    from bento.served_log import SERVED

    time.sleep(max(0.0, at - time.monotonic()))
    folder, away = root / SERVED, root / f"{SERVED}.away"
    folder.rename(away)
    folder.write_text("not a folder")
    time.sleep(seconds)
    folder.unlink()
    away.rename(folder)


def fault(args: argparse.Namespace, live: Path, new_db: Path | None, redis: list[subprocess.Popen], url: str,
          at: float, marks: dict[str, float]) -> None:
    """At monotonic time `at`: replace the store file, or kill Redis, restart it empty and recover."""
    import httpx

    from features.store import online_store_file

    def ready() -> bool:
        """/readyz is 200."""
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    time.sleep(max(0.0, at - time.monotonic()))
    marks["start"] = time.monotonic()
    if not redis:
        db = online_store_file(live)
        db.unlink()  # what an operator does: rm, then cp (not an atomic rename)
        shutil.copy2(new_db, db)
        marks["end"] = marks["copied"] = time.monotonic()
        return
    redis[0].kill()  # SIGKILL: an outage, its data gone
    redis[0].wait()
    time.sleep(args.outage_seconds)
    redis[0] = start_redis(args.redis_port, live.parent / "redis")
    marks["restarted"] = time.monotonic()
    cmd = [sys.executable, "-m", "dacdr.cli", "features", "materialize", "--workdir", str(live)]
    err = live.parent / "materialize.log"  # a file, not a pipe nobody drains while it runs
    with open(err, "w") as fh:
        recovery = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh)
    while recovery.poll() is None:  # /readyz must not say 200 before the store is whole again
        if "ready" not in marks and ready():
            marks["ready"] = time.monotonic()
        time.sleep(0.2)
    if recovery.returncode != 0:
        raise RuntimeError(f"materialize failed: {err.read_text()[-2000:]}")
    marks["end"] = marks["materialized"] = time.monotonic()
    while "ready" not in marks and not ready():
        time.sleep(0.1)
    marks.setdefault("ready", time.monotonic())


def main() -> None:
    """Parse arguments, prepare, soak, judge, print the summary."""
    import httpx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prepare_args(ap)
    ap.add_argument("--backend", choices=["sqlite", "redis"], default="sqlite")
    ap.add_argument("--seconds", type=float, default=600.0, help="the soak's length; the fault in its middle")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--fault-at", type=float, default=None, help="seconds into the soak (default: half)")
    ap.add_argument("--outage-seconds", type=float, default=5.0, help="redis: down this long before restart")
    ap.add_argument("--sink-fault-seconds", type=float, default=0.0,
                    help="also break the served log's sink this long, at 3/4 of the run (0: no)")
    ap.add_argument("--grace-seconds", type=float, default=0.0,
                    help="after the fault ends, answers may still carry the old store this long (the "
                         "watcher stats the file before every read: the next request reads the new one)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here too")
    args = ap.parse_args()
    if args.backend == "redis" and shutil.which("redis-server") is None:
        ap.error("redis-server is not on PATH (apt-get install redis-server)")

    tags = prepared(args)
    if not bento_is_current(tags["bento"]):  # the server runs the Bento's copy of the code
        print(f"# {tags['bento']} was packaged from other code than this checkout's: packaging again")
        (args.workdir / "tags.json").unlink()
        tags = prepared(args)
    queries = workload(tags["feast"], tags["domain"], 200, args.candidates, args.seed)
    soak_dir = args.workdir / f"soak-{args.backend}"
    shutil.rmtree(soak_dir, ignore_errors=True)
    redis, new_db = [], None  # the redis-server running now (replaced by the restart)
    if args.backend == "sqlite":
        live, new_db = sqlite_stores(tags, soak_dir)
        refs = (Reference.of(tags, live, queries), Reference.of(tags, Path(tags["feast"]), queries))
    else:
        args.redis_port = free_port()
        redis.append(start_redis(args.redis_port, soak_dir / "redis"))
        live = redis_store(tags, soak_dir, args.redis_port)
        refs = (Reference.of(tags, live, queries),) * 2
    served_log = soak_dir / "served_log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {"DACDR_FEAST_REPO": str(live), "DACDR_SERVED_LOG_DIR": str(served_log)}
    load0 = os.getloadavg()[0]
    log, warm, marks, rss = Log(), Log(), {}, []
    server = start_server(args.workdir, tags["bento"], port, extra)
    stop = threading.Event()
    try:
        asyncio.run(soak(url, queries, refs, 4, 3.0, warm))  # warm-up: logged, not judged
        sampler = threading.Thread(target=rss_sampler, args=(server.pid, RSS_EVERY_S, stop, rss))
        sampler.start()
        t0 = time.monotonic()
        mid = t0 + (args.seconds / 2 if args.fault_at is None else args.fault_at)
        injector = threading.Thread(target=fault, args=(args, live, new_db, redis, url, mid, marks))
        injector.start()
        sink_at = t0 + 0.75 * args.seconds  # the log's folder replaced by a file, then put back
        sink = threading.Thread(target=sink_fault, args=(served_log, sink_at, args.sink_fault_seconds))
        if args.sink_fault_seconds > 0:
            sink.start()
        asyncio.run(soak(url, queries, refs, args.concurrency, args.seconds, log))
        injector.join()
        if sink.ident is not None:
            sink.join()
        lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
        metric = dict(ln.rsplit(" ", 1) for ln in lines if ln.startswith("dacdr_served_log_rows_"))
        written, dropped = (float(metric.get(f"dacdr_served_log_rows_{n}_total", "nan")) for n in ("written",
                                                                                                   "dropped"))
    finally:
        stop.set()
        stop_server(server)  # SIGTERM: the worker flushes its queue
        for proc in redis:
            proc.kill()
    sampler.join()
    summary = summarize(args, tags, log, refs, marks, t0, rss, load0)
    served = log.served_items + warm.served_items
    on_disk = rows_on_disk(served_log)
    # a sink fault may cost log rows, each one counted; nothing else may lose any
    summary.update(served_items=served, log_rows_on_disk=on_disk, log_rows_written_metric=written,
                   log_rows_dropped_metric=dropped, log_rows_lost_uncounted=served - on_disk - dropped)
    counted = served - on_disk == dropped and (args.sink_fault_seconds > 0 or dropped == 0)
    summary["pass"] = bool(summary["pass"] and counted)
    print(json.dumps(summary, indent=2))
    print(markdown(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


def halves_slope(r: np.ndarray, since: float) -> float | None:
    """Workers' RSS slope (MiB/min) from `since` on: a plateau reached early reads ~0, a leak does not."""
    late = r[:, 0] >= since
    return round(float(np.polyfit(r[late, 0], r[late, 1], 1)[0]) * 60, 2) if late.sum() >= 3 else None


def summarize(
    args: argparse.Namespace, tags: dict[str, str], log: Log, refs: tuple[Reference, Reference],
    marks: dict[str, float], t0: float, rss: list[tuple[float, float, float]], load0: float,
) -> dict:
    """The soak's figures: the verdict, latencies, the fault's phases, RSS."""
    t_send, t_done, ok, before, after, cold, k = log.columns()
    warm = (~refs[0].cold[k], ~refs[1].cold[k])
    window = (marks["start"], marks["end"])
    verdict = judge(t_send, t_done, ok, before, after, cold, warm, window, args.grace_seconds)
    if "restarted" in marks:  # redis: errors while it was down vs while it was reloaded
        verdict["errors_while_down"] = int((~ok & (t_send < marks["restarted"])).sum())
        verdict["errors_while_reloading"] = int((~ok & (t_send >= marks["restarted"])).sum())
    took = (t_done - t_send) * 1000
    fail, good = took[~ok], took[ok]
    r = np.array(rss)
    late = r[:, 0] >= t0 + 60  # the slope after warm-up (allocator arenas, caches): flat means ~0
    slope = round(float(np.polyfit(r[late, 0], r[late, 1], 1)[0]) * 60, 2) if late.sum() >= 3 else None
    old, new = refs
    differ = sum(not new.matches(i, old.items[i], old.scores[i], old.cold[i]) for i in range(len(old.cold)))

    def mib(col: int) -> dict[str, float]:
        """Start, end and max of an RSS column (MiB)."""
        return {"start": round(r[0, col], 1), "end": round(r[-1, col], 1), "max": round(r[:, col].max(), 1)}

    summary = {
        "backend": args.backend, "seconds": args.seconds, "concurrency": args.concurrency,
        "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)], "bento": tags["bento"],
        "queries_differing_between_stores": differ, "grace_s": args.grace_seconds,
        "fault_at_s": round(marks["start"] - t0, 1),
        "fault_phases_s": {k: round(v - marks["start"], 3) for k, v in marks.items() if k != "start"},
        "status": log.codes, **verdict, "rps": round(len(ok) / args.seconds, 1),
        "ok_p50_ms": round(float(np.percentile(good, 50)), 2),
        "ok_p99_ms": round(float(np.percentile(good, 99)), 2),
        "fail_max_ms": round(float(fail.max()), 1) if len(fail) else None,
        "fail_p99_ms": round(float(np.percentile(fail, 99)), 1) if len(fail) else None,
        "rss_workers_mib": mib(1), "rss_tree_mib": mib(2),
        "rss_workers_mib_per_min_after_1st_min": slope,
        "rss_workers_mib_per_min_2nd_half": halves_slope(r, t0 + args.seconds / 2),
        "rss_workers_mib_by_minute": [round(float(r[r[:, 0] <= t0 + 60 * m, 1][-1]), 1)
                                      for m in range(1, int(args.seconds // 60) + 1)],
    }
    summary["pass"] = bool(
        verdict["wrong"] == 0 and verdict["silent_cold_starts"] == 0 and verdict["errors_outside_window"] == 0
        and (not len(fail) or fail.max() <= FAIL_FAST_S * 1000)
    )
    return summary


def markdown(s: dict) -> str:
    """The summary as a short Markdown block for docs/benchmarks.md."""
    phases = ", ".join(f"{k} +{v:.1f} s" for k, v in s["fault_phases_s"].items())
    fail = f"max {s['fail_max_ms']}, p99 {s['fail_p99_ms']}" if s["fail_max_ms"] is not None else "none"
    w, t = s["rss_workers_mib"], s["rss_tree_mib"]
    head = ["answers", "wrong", "stale after", "silent cold", "errors (outside window)", "failed ms",
            "ok p50 / p99 ms", "RSS workers MiB start/end/max (tree)", "log rows served / on disk / dropped"]
    row = [s["answers"], s["wrong"], s["stale_after"], s["silent_cold_starts"],
           f"{s['errors']} ({s['errors_outside_window']})", fail, f"{s['ok_p50_ms']} / {s['ok_p99_ms']}",
           f"{w['start']}/{w['end']}/{w['max']} ({t['start']}/{t['end']}/{t['max']})",
           f"{s['served_items']} / {s['log_rows_on_disk']} / {s['log_rows_dropped_metric']:.0f}"]
    return "\n".join([
        f"**Soak, {s['backend']}** ({s['seconds']:.0f} s, c = {s['concurrency']}, /rank 100 candidates, "
        f"load avg {s['load_avg'][0]}-{s['load_avg'][1]}): fault at {s['fault_at_s']} s ({phases})", "",
        "| " + " | ".join(head) + " |", "|---" * len(head) + "|", "| " + " | ".join(map(str, row)) + " |", "",
        f"pass: {s['pass']}; {s['queries_differing_between_stores']} of 200 queries differ between the "
        f"stores; in the window: {s['old_in_window']} old, {s['cold_in_window']} cold answers",
        f"workers' RSS by minute (MiB): {s['rss_workers_mib_by_minute']}; slope after the 1st minute "
        f"{s['rss_workers_mib_per_min_after_1st_min']}, in the 2nd half "
        f"{s['rss_workers_mib_per_min_2nd_half']} MiB/min",
    ])


if __name__ == "__main__":
    main()
