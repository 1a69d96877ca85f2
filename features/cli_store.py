"""`dacdr features build|apply|materialize|serve`: the Feast feature store's commands."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

app = typer.Typer()
features_app = typer.Typer(
    help="Feast feature store: build snapshots, apply, materialize, serve online features.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

DEFAULT_WORKDIR = Path(".work/feast")
WORKDIR_HELP = "Feature-store working directory (the Feast repo goes to <workdir>/feature_repo)."


def _parse_end(end: str | None) -> datetime | None:
    """YYYY-MM-DD or an ISO datetime as an aware UTC datetime (naive means UTC); None stays None."""
    if end is None:
        return None
    try:
        when = datetime.fromisoformat(end)
    except ValueError as exc:
        raise typer.BadParameter(f"--end {end!r} is not YYYY-MM-DD or an ISO datetime") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@features_app.command("build")
def build_cmd(
    logs: Path = typer.Option(..., "--logs", help="Landing or curated zone (behaviors, items, domains)."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
    max_len: int = typer.Option(50, "--max-len", help="Sequence length per behaviour type."),
    online: str = typer.Option("sqlite", "--online", help="Online store: sqlite (default) or redis."),
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="Redis server for --online redis, e.g. redis://127.0.0.1:6379/0."
    ),
) -> None:
    """Compute daily per-user sequence snapshots and the other views' parquet; render the Feast repo."""
    from features.store import OnlineConfig, build

    try:
        config = OnlineConfig(kind=online, redis_url=redis_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    result = build(logs, workdir, max_len=max_len, online=config)
    for name, rows in result.rows.items():
        typer.echo(f"{name}: {rows} rows")
    typer.echo(f"feature repo: {result.repo}")


@features_app.command("apply")
def apply_cmd(workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP)) -> None:
    """Register entities, sources, views and the dacdr_v1 feature service (like `feast apply`)."""
    from features.store import apply

    names = apply(workdir)
    typer.echo(f"applied {len(names)} objects: {', '.join(names)}")


@features_app.command("materialize")
def materialize_cmd(
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
    end: str | None = typer.Option(
        None, "--end", help="Materialize up to this date/time (UTC); default: now."
    ),
) -> None:
    """Incrementally load the latest feature rows up to --end into the online store."""
    from features.store import materialize

    result = materialize(workdir, _parse_end(end))
    total = sum(result.rows.values())
    for view, rows in result.rows.items():
        typer.echo(f"{view}: {rows} rows")
    typer.echo(f"{total} rows up to {result.end.isoformat()} in {result.seconds:.1f}s")


@features_app.command("serve")
def serve_cmd(
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (localhost by default)."),
    port: int = typer.Option(6566, "--port", help="HTTP port of the feature server."),
    workers: int = typer.Option(1, "--workers", help="Server worker processes."),
) -> None:
    """Start Feast's HTTP feature server (`feast serve`): POST /get-online-features."""
    from features.store import open_store

    open_store(workdir).serve(host=host, port=port, workers=workers)
