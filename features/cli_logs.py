"""CLI of the logs stage: simulate, import (amazon, interactions, c2dsr), check-logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dacdr.errors import UserError, existing_dir, existing_file, output_dir, user_errors

app = typer.Typer()
import_app = typer.Typer(help="Import public data sets into the log contract.", no_args_is_help=True)
app.add_typer(import_app, name="import")

# every command here that writes a landing zone refuses a foreign --out unless forced
Force = Annotated[bool, typer.Option("--force", help="Replace --out even if dacdr did not write it.")]


@app.command("simulate")
def simulate_cmd(
    preset: str = typer.Option("tiny", help="Size preset: tiny (tests), demo (main job) or bench."),
    seed: int = typer.Option(0, help="Random seed; same seed, same bytes."),
    out: Path = typer.Option(..., help="Landing-zone folder to write (replaced atomically)."),
    n_targets: int = typer.Option(3, help="Number of target domains (1-5)."),
    force: Force = False,
) -> None:
    """Simulate a multi-domain landing zone (source funnel, sparse target domains, onboarding domain)."""
    from features.contract import ContractError
    from features.io import LANDING_OUTPUT, OutputRefused, prepare_output
    from features.simulator import simulate, summary_dict

    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):  # a typo'd --out ~ must cost nobody their files
        prepare_output(out, LANDING_OUTPUT, force)
    with user_errors(ValueError, ContractError):
        summary = simulate(preset, seed=seed, out=out, n_targets=n_targets)
    typer.echo(json.dumps(summary_dict(summary), indent=1))


@import_app.command("amazon")
def import_amazon_cmd(
    source: Path = typer.Option(..., help="Source-category file (2014/2018 ratings CSV, 5-core JSON lines)."),
    target: Path = typer.Option(..., help="Target-category file, same formats."),
    out: Out = ...,
    fmt: str | None = typer.Option(
        None, "--format", help="Both files' format, overriding detection: 2014, 2018 or 5core."
    ),
    force: Force = False,
) -> None:
    """Import Amazon review ratings: source category -> behaviors (rate), target -> impressions (rating)."""
    from dataclasses import asdict

    from features.contract import ContractError
    from features.importers import import_amazon
    from features.io import LANDING_OUTPUT, OutputRefused, prepare_output

    existing_file(source, "--source")
    existing_file(target, "--target")
    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):
        prepare_output(out, LANDING_OUTPUT, force)
    with user_errors(ContractError):
        summary = import_amazon(source, target, out, fmt)
    typer.echo(json.dumps({**asdict(summary), "out": str(summary.out)}, indent=1))


def _refuse_foreign(out: Path, force: bool) -> None:
    """--out must be new, empty or a landing zone dacdr wrote (else one error line; --force replaces it)."""
    from features.io import LANDING_OUTPUT, OutputRefused, prepare_output

    output_dir(out, "--out")
    with user_errors(OutputRefused, option="--out"):
        prepare_output(out, LANDING_OUTPUT, force)


def _titles_categories(titles: list[Path], n: int, seed: int):
    """Title pseudo-categories of every titles file (None without files)."""
    if not titles:
        return None
    import pyarrow as pa

    from features.titles import TitleError, pseudo_categories, read_titles

    for t in titles:
        existing_file(t, "--titles")
    with user_errors(TitleError):
        return pseudo_categories(pa.concat_tables([read_titles(t) for t in titles]), n, seed=seed)


def _import_and_print(tbl, source_domain: str, target_domain: str, out: Path, protocol, categories,
                      shared_item_ids: bool) -> None:
    """Write the zone and print its summary as JSON."""
    from dataclasses import asdict

    from features.contract import ContractError
    from features.interactions import import_interactions

    with user_errors(ContractError):
        summary = import_interactions(tbl, source_domain, target_domain, out, protocol, categories,
                                      shared_item_ids)
    typer.echo(json.dumps({**asdict(summary), "out": str(summary.out)}, indent=1))


def _protocol(negatives: int, eval_negatives: int, eval_last: int, val_negatives: int, source_behavior: str,
              seed: int, sample_users: int, negatives_from: str):
    """The import protocol from the CLI options (one error line for a bad behaviour type)."""
    from features.contract import BEHAVIOR_TYPES
    from features.interactions import Protocol

    if source_behavior not in BEHAVIOR_TYPES:
        raise UserError(f"--source-behavior {source_behavior!r}: expected one of {', '.join(BEHAVIOR_TYPES)}")
    return Protocol(negatives, eval_negatives, eval_last, val_negatives, source_behavior, seed, sample_users,
                    negatives_from)


NEGATIVES_HELP = "Implicit data: sampled negatives per training interaction (uniform over the target items)."
EVAL_NEG_HELP = "Implicit data: sampled negatives of a user's last interaction (the test request)."
NEG_FROM_HELP = ("Implicit data: draw negatives from the items that exist at the request's time (available) "
                 "or from every item of the domain (all).")
VAL_NEG_HELP = "Implicit data: sampled negatives of the --eval-last - 1 interactions before it (validation)."
EVAL_LAST_HELP = "Implicit data: a user's last N target interactions are evaluation requests."

# the options both interaction importers take (interactions, c2dsr): flag, type and help stated once
Out = Annotated[Path, typer.Option(help="Landing-zone folder to write (nothing is written on error).")]
TitleCategories = Annotated[int, typer.Option(help="Number of title pseudo-categories.")]
Negatives = Annotated[int, typer.Option(min=0, help=NEGATIVES_HELP)]
EvalNegatives = Annotated[int, typer.Option(min=0, help=EVAL_NEG_HELP)]
EvalLast = Annotated[int, typer.Option(min=0, help=EVAL_LAST_HELP)]
ValNegatives = Annotated[int, typer.Option(min=0, help=VAL_NEG_HELP)]
Seed = Annotated[int, typer.Option(help="Seed of the negative sampling, user sample and title clustering.")]
SampleUsers = Annotated[int, typer.Option(min=0, help="Keep a seeded sample of N users (0: all).")]
NegativesFrom = Annotated[str, typer.Option(help=NEG_FROM_HELP)]


@import_app.command("interactions")
def import_interactions_cmd(
    file: list[str] = typer.Option(..., "--file", help="PATH or PATH:DOMAIN (repeatable); DOMAIN names the "
                                   "file's rows unless --columns has domain=COL."),
    columns: str = typer.Option("user=0,item=1,rating=2", help="ROLE=COLUMN list; roles user, item, rating, "
                                "timestamp, domain; columns are header names or 0-based indices."),
    source_domain: str = typer.Option(..., help="Domain whose rows become behaviours."),
    target_domain: str = typer.Option(..., help="Domain whose rows become impressions."),
    out: Out = ...,
    sep: str = typer.Option("tab", help="Field separator: tab, comma or one character."),
    header: bool = typer.Option(False, help="The files start with a header line."),
    shared_item_ids: bool = typer.Option(False, help="An item id names the same item in every domain."),
    titles: list[Path] = typer.Option([], "--titles", help="item<TAB>title file with a header (repeatable): "
                                      "title pseudo-categories become category_id."),
    title_categories: TitleCategories = 256,
    negatives: Negatives = 4,
    eval_negatives: EvalNegatives = 99,
    eval_last: EvalLast = 2,
    val_negatives: ValNegatives = 99,
    source_behavior: str = typer.Option("click", help="Implicit data: behaviour type of source rows."),
    seed: Seed = 0,
    sample_users: SampleUsers = 0,
    negatives_from: NegativesFrom = "available",
    force: Force = False,
) -> None:
    """Import interaction files (ratings or implicit, timed or not); protocol: docs/log-contract.md."""
    from features.interactions import (
        InteractionImportError,
        concat_standard,
        parse_columns,
        read_interaction_file,
    )

    delimiter = {"tab": "\t", "comma": ","}.get(sep, sep)
    if len(delimiter) != 1:
        raise UserError(f"--sep {sep!r}: expected tab, comma or one character")
    _refuse_foreign(out, force)
    with user_errors(InteractionImportError):
        cols = parse_columns(columns)
        tables = []
        for spec in file:
            path, _, domain = spec.rpartition(":") if ":" in spec else (spec, "", "")
            existing_file(Path(path), "--file")
            tables.append(read_interaction_file(path, cols, delimiter, header, domain or None))
        tbl = concat_standard(tables)
    protocol = _protocol(negatives, eval_negatives, eval_last, val_negatives, source_behavior, seed,
                         sample_users, negatives_from)
    cats = _titles_categories(titles, title_categories, seed)
    _import_and_print(tbl, source_domain, target_domain, out, protocol, cats, shared_item_ids)


@import_app.command("c2dsr")
def import_c2dsr_cmd(
    data: Path = typer.Option(..., help="C2DSR data folder (items_x.txt, items_y.txt, *_new.txt)."),
    domains: str = typer.Option(..., help="X_NAME,Y_NAME: names of the items_x and items_y domains."),
    source_domain: str = typer.Option(..., help="Which of the two is the source (the other is the target)."),
    out: Out = ...,
    titles: list[Path] = typer.Option([], "--titles", help="asin<TAB>title file with a header (repeatable)."),
    title_categories: TitleCategories = 256,
    negatives: Negatives = 4,
    eval_negatives: EvalNegatives = 99,
    eval_last: EvalLast = 2,
    val_negatives: ValNegatives = 99,
    source_behavior: str = typer.Option("click", help="Behaviour type of source rows."),
    seed: Seed = 0,
    sample_users: SampleUsers = 0,
    negatives_from: NegativesFrom = "available",
    force: Force = False,
) -> None:
    """Import a C2DSR mixed-domain sequence folder (Amazon Food-Kitchen, Movie-Book): implicit, timed."""
    from features.c2dsr import read_c2dsr
    from features.interactions import InteractionImportError

    existing_dir(data, "--data")
    names = [d.strip() for d in domains.split(",")]
    if len(names) != 2 or source_domain not in names:
        raise UserError(f"--domains {domains!r} / --source-domain {source_domain!r}: give X_NAME,Y_NAME and "
                        "one of them as the source")
    _refuse_foreign(out, force)
    with user_errors(InteractionImportError):
        tbl = read_c2dsr(data, names[0], names[1])
    target = names[1] if source_domain == names[0] else names[0]
    protocol = _protocol(negatives, eval_negatives, eval_last, val_negatives, source_behavior, seed,
                         sample_users, negatives_from)
    cats = _titles_categories(titles, title_categories, seed)
    _import_and_print(tbl, source_domain, target, out, protocol, cats, shared_item_ids=True)


@import_app.command("amazon-sample")
def amazon_sample_cmd(
    out: Path = typer.Option(..., help="Folder for the (source, target) file pair."),
    seed: int = typer.Option(0, help="Random seed; same seed, same files."),
    users: int = typer.Option(400, min=3, help="Users rating the source category."),
    items: int = typer.Option(300, min=2, help="Items per category."),
    ratings_per_user: float = typer.Option(8.0, min=1.0, help="Mean ratings per user and category."),
    fmt: str = typer.Option("ratings2014", "--format", help="ratings2014, ratings2018 or 5core."),
) -> None:
    """Write a synthetic Amazon-format (source, target) pair (taste shared across the two categories)."""
    from features.amazon_synth import make_amazon_files

    output_dir(out, "--out")
    with user_errors(ValueError):
        src, tgt = make_amazon_files(out, seed, users, items, fmt, ratings_per_user)
    typer.echo(json.dumps({"source": str(src), "target": str(tgt)}, indent=1))


@app.command("check-logs")
def check_logs_cmd(
    root: Path = typer.Argument(..., help="Landing-zone folder to check."),
    tables: str = typer.Option(
        "impressions,behaviors,items,domains",
        help="Comma-separated tables to check (onboarding zone: a subset).",
    ),
) -> None:
    """Check a landing zone against the log contract; exit 1 naming the first bad file and problem."""
    from features.contract import TABLES, ContractError
    from features.io import check_contract

    existing_dir(root, "ROOT")
    names = tuple(t.strip() for t in tables.split(",") if t.strip())
    unknown = [t for t in names if t not in TABLES]
    if unknown or not names:
        raise UserError(f"--tables {tables!r}: expected a comma-separated subset of {', '.join(TABLES)}")
    try:
        rows = check_contract(root, names)
    except (ContractError, KeyError) as exc:
        typer.echo(f"contract violation: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(rows))
