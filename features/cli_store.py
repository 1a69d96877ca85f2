"""`dacdr features build|apply|materialize|push|serve`: the Feast feature store's commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import typer

from dacdr.engine import RAY, check_engine
from dacdr.errors import UserError, existing_dir, output_dir, user_errors

app = typer.Typer()
features_app = typer.Typer(
    help="Feast feature store: build snapshots, apply, materialize, serve online features.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

DEFAULT_WORKDIR = Path(".work/feast")
WORKDIR_HELP = "Feature-store working directory (the Feast repo goes to <workdir>/feature_repo)."


def _parse_end(end: str | None, option: str = "--end") -> datetime | None:
    """YYYY-MM-DD or an ISO datetime as an aware UTC datetime (naive means UTC); None stays None."""
    if end is None:
        return None
    try:
        when = datetime.fromisoformat(end)
    except ValueError as exc:
        raise UserError(f"{option} {end!r}: expected YYYY-MM-DD or an ISO datetime") from exc
    from features.store import utc

    return utc(when)


@contextmanager
def _store_errors() -> Iterator[None]:
    """The store's own errors and a broken feature_store.yaml as one UserError line.

    The messages never quote the file: after Feast's ${VAR} substitution it may hold a secret.
    """
    import yaml
    from feast.repo_config import FeastConfigError

    from features.store import FeatureStoreError

    try:
        yield
    except (FeatureStoreError, FileNotFoundError) as exc:  # not built, or its data folder is gone
        raise UserError(str(exc)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise UserError(f"feature_store.yaml is not valid YAML: {problem}{where}; rebuild it with "
                        "`dacdr features build`") from None
    except FeastConfigError as exc:
        cause = exc.args[0] if exc.args else None
        errors = cause.errors() if hasattr(cause, "errors") else []
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        raise UserError(f"feature_store.yaml is not a valid Feast config ({fields or 'unreadable'}); "
                        "rebuild it with `dacdr features build`") from None


def _built_workdir(workdir: Path) -> Path:
    """`workdir` if `dacdr features build` has rendered its Feast repo, else a UserError saying so."""
    from features.store import YAML_NAME, repo_dir

    existing_dir(workdir, "--workdir")
    if not (repo_dir(workdir) / YAML_NAME).is_file():
        build_cmd = f"dacdr features build --workdir {workdir}"
        raise UserError(f"--workdir {workdir}: no feature repo; run `{build_cmd}` first")
    return workdir


@features_app.command("build")
def build_cmd(
    logs: Path = typer.Option(..., "--logs", help="Landing or curated zone (behaviors, items, domains)."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
    max_len: int = typer.Option(50, "--max-len", min=1, help="Sequence length per behaviour type."),
    online: str = typer.Option("sqlite", "--online", help="Online store: sqlite (default) or redis."),
    redis_url: str | None = typer.Option(
        None, "--redis-url",
        help="Redis server for --online redis, e.g. redis://127.0.0.1:6379/0 (no password: set "
             "$REDIS_PASSWORD; feature_store.yaml then holds ${REDIS_PASSWORD}, never the password).",
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (snapshots on Ray Data, $RAY_ADDRESS)."
    ),
) -> None:
    """Compute daily per-user sequence snapshots and the other views' parquet; render the Feast repo."""
    from features.store import OnlineConfig, build

    existing_dir(logs, "--logs")
    output_dir(workdir, "--workdir")
    check_engine(engine)
    with user_errors(ValueError, option="--online / --redis-url"):
        config = OnlineConfig(kind=online, redis_url=redis_url)
    result = build(logs, workdir, max_len=max_len, online=config, engine=engine)
    for name, rows in result.rows.items():
        typer.echo(f"{name}: {rows} rows")
    typer.echo(f"feature repo: {result.repo}")


@features_app.command("apply")
def apply_cmd(workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP)) -> None:
    """Register entities, sources, views and the dacdr_v1 feature service (like `feast apply`)."""
    from features.store import apply

    with _store_errors():
        names = apply(_built_workdir(workdir))
    typer.echo(f"applied {len(names)} objects: {', '.join(names)}")


@features_app.command("materialize")
def materialize_cmd(
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
    end: str | None = typer.Option(
        None, "--end", help="Materialize up to this date/time (UTC); default: now."
    ),
    views: list[str] | None = typer.Option(
        None, "--view", help="Only this feature view (repeatable); default: every view."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (duckdb, batched writes) or ray (Feast's Ray store and ray.engine)."
    ),
) -> None:
    """Incrementally load the latest feature rows up to --end into the online store."""
    import warnings

    from features.materialize import materialize

    workdir, until = _built_workdir(workdir), _parse_end(end)
    check_engine(engine)
    if engine == RAY:
        from features.store_ray import materialize_on_ray as materialize
    import feast  # noqa: F401  # its import turns DeprecationWarnings on ("once") for the whole process
    with warnings.catch_warnings(), _store_errors():
        # feast reads the offline store through ibis, whose duckdb backend calls APIs duckdb has
        # deprecated (fetch_arrow_table); nothing a user can act on, so only those two libraries'
        # DeprecationWarnings are silenced, only while materializing, and after feast's import
        for module in (r"ibis\.", r"feast\."):
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        result = materialize(workdir, until, views or None)
    total = sum(result.rows.values())
    for view, rows in result.rows.items():
        typer.echo(f"{view}: {rows} rows")
    typer.echo(f"{total} rows up to {result.end.isoformat()} in {result.seconds:.1f}s")


@features_app.command("push")
def push_cmd(
    logs: Path = typer.Option(..., "--logs", help="Landing or curated zone holding the day's behaviours."),
    dt: str = typer.Option(..., "--dt", help="The day (YYYY-MM-DD) whose behaviours to push."),
    until: str | None = typer.Option(
        None, "--until", help="Only behaviours before this ISO time (UTC); default: the whole day."
    ),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
) -> None:
    """Append a day's source behaviours to the online sequences now (Feast push; replays change nothing)."""
    from features import contract as C
    from features.push import push

    existing_dir(logs, "--logs")
    try:
        valid_day = len(dt) == 10 and date.fromisoformat(dt).isoformat() == dt
    except ValueError:
        valid_day = False
    if not valid_day:
        raise UserError(f"--dt {dt!r}: expected YYYY-MM-DD")
    workdir, before = _built_workdir(workdir), _parse_end(until, "--until")
    with _store_errors(), user_errors(C.ContractError):
        result = push(logs, dt, workdir, before)
    typer.echo(
        f"{result.events} events of {result.users} users; pushed {result.changed} changed users "
        f"to both sequence views in {result.seconds:.2f}s"
    )


@features_app.command("serve")
def serve_cmd(
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help=WORKDIR_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (localhost by default)."),
    port: int = typer.Option(6566, "--port", help="HTTP port of the feature server."),
    workers: int = typer.Option(1, "--workers", help="Server worker processes."),
) -> None:
    """Start Feast's HTTP feature server (`feast serve`): POST /get-online-features."""
    from features.store import open_store

    with _store_errors():
        store = open_store(_built_workdir(workdir))
    store.serve(host=host, port=port, workers=workers)
