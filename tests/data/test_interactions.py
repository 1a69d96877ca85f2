"""Generic interaction import: rating files without times, C2DSR implicit sequences with sampled negatives,
title pseudo-categories, and the CLI's one-line errors. Every input is a small file written here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from dacdr.cli import app
from features import contract as C
from features.c2dsr import read_c2dsr
from features.importers import MAPPINGS_DIR
from features.interactions import (
    T0_SECONDS,
    InteractionImportError,
    Protocol,
    concat_standard,
    import_interactions,
    parse_columns,
    read_interaction_file,
)
from features.io import check_contract, read_table
from features.titles import pseudo_categories, read_titles


def _ratings(path: Path, rows: list[tuple[int, int, int]]) -> Path:
    """A Douban-style user<TAB>item<TAB>rating file without header."""
    path.write_text("".join(f"{u}\t{i}\t{r}\n" for u, i, r in rows))
    return path


def _douban(tmp_path: Path) -> pa.Table:
    """Books and music sharing user ids and item id numbers (items are per domain)."""
    book = _ratings(tmp_path / "book.tsv", [(1, 7, 4), (1, 8, 5), (2, 7, 2), (3, 9, 3)])
    music = _ratings(tmp_path / "music.tsv", [(1, 7, 5), (2, 8, 1), (4, 7, 4)])
    cols = parse_columns("user=0,item=1,rating=2")
    return concat_standard([read_interaction_file(book, cols, domain="book"),
                            read_interaction_file(music, cols, domain="music")])


def test_untimed_ratings_follow_the_full_history_protocol(tmp_path: Path) -> None:
    """Source rows at T0, target rows a day later; item 7 of books is not item 7 of music."""
    out = tmp_path / "zone"
    s = import_interactions(_douban(tmp_path), "book", "music", out)
    assert (s.explicit, s.timed, s.users, s.overlap_users) == (True, False, 4, 2)
    assert check_contract(out) == {C.IMPRESSIONS: 3, C.BEHAVIORS: 4, C.ITEMS: 5, C.DOMAINS: 2}
    beh, imp = read_table(out, C.BEHAVIORS).to_pandas(), read_table(out, C.IMPRESSIONS).to_pandas()
    assert (beh[C.EVENT_TIME].astype("int64") // 10**6 == T0_SECONDS).all()  # timestamp[us] -> seconds
    assert (imp[C.EVENT_TIME].astype("int64") // 10**6 == T0_SECONDS + 86_400).all()
    assert set(beh[C.BEHAVIOR]) == {"rate"} and sorted(imp[C.LABEL]) == [1.0, 4.0, 5.0]
    items = pd.read_parquet(out / MAPPINGS_DIR / "items.parquet")
    assert {"book:7", "music:7"} <= set(items["raw_id"])
    book7 = items.loc[items["raw_id"] == "book:7", C.ITEM_ID].item()
    assert book7 not in set(imp[C.ITEM_ID])


def _c2dsr(folder: Path, n_users: int = 30, seed: int = 0) -> Path:
    """A small C2DSR folder: X items 0..19, Y items 20..49, 4-9 interactions per user, shuffled fields."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    (folder / "items_x.txt").write_text("".join(f"{100 + k}\tBX{k:08d}\t{k}\n" for k in range(20)))
    (folder / "items_y.txt").write_text("".join(f"{200 + k}\tBY{k:08d}\t{k}\n" for k in range(30)))
    lines = []
    for u in range(n_users):
        n = int(rng.integers(4, 10))
        items = np.concatenate([rng.choice(20, 2, replace=False), 20 + rng.choice(30, n - 2, replace=False)])
        days = 1_388_620_800 + 86_400 * rng.integers(0, 5, n)  # many same-day ties
        fields = [f"{i}|{d}|x|" for i, d in zip(items, days, strict=True)]
        rng.shuffle(fields)
        lines.append("\t".join([str(u), "0", *fields]))
    (folder / "test_new.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_c2dsr_reader_maps_indices_to_domains(tmp_path: Path) -> None:
    """Index < len(items_x) is an X item, else a Y item at index - len(items_x); every field is read."""
    tbl = read_c2dsr(_c2dsr(tmp_path / "d"), "food", "kitchen").to_pandas()
    assert tbl.groupby("user").size().between(4, 9).all()
    assert tbl.loc[tbl["domain"] == "food", "item"].str.startswith("BX").all()
    assert tbl.loc[tbl["domain"] == "kitchen", "item"].str.startswith("BY").all()
    assert (tbl.groupby("user")["domain"].apply(lambda d: (d == "food").sum()) == 2).all()


def test_implicit_negatives_and_leave_last_out(tmp_path: Path) -> None:
    """Each request: one positive, then negatives from the target pool the user never touched; the user's
    last request gets eval_negatives, the two before it val_negatives, the others `negatives`."""
    tbl = read_c2dsr(_c2dsr(tmp_path / "d"), "food", "kitchen")
    out = tmp_path / "zone"
    proto = Protocol(negatives=3, eval_negatives=7, eval_last=3, val_negatives=5, seed=1)
    s = import_interactions(tbl, "food", "kitchen", out, proto, shared_item_ids=True)
    assert not s.explicit and s.timed
    check_contract(out)
    imp = read_table(out, C.IMPRESSIONS).to_pandas()
    beh = read_table(out, C.BEHAVIORS).to_pandas()
    assert set(beh[C.BEHAVIOR]) == {"click"}
    per_req = imp.groupby(C.REQUEST_ID).agg(pos=(C.LABEL, "sum"), n=(C.LABEL, "size"),
                                            user=(C.USER_ID, "first"), t=(C.EVENT_TIME, "first"))
    assert (per_req["pos"] == 1).all()
    from_end = per_req.groupby("user")["t"].rank(ascending=False, method="first")
    assert (per_req.loc[from_end == 1, "n"] == 8).all()  # test: 1 + 7
    assert (per_req.loc[from_end.between(2, 3), "n"] == 6).all()
    assert (per_req.loc[from_end > 3, "n"] == 4).all()
    assert not per_req.duplicated(["user", "t"]).any()  # same-day ties spread in file order
    positives = imp[imp[C.LABEL] == 1]
    seen = set(zip(positives[C.USER_ID], positives[C.ITEM_ID], strict=True))
    negatives = imp[imp[C.LABEL] == 0]
    assert not any((u, i) in seen for u, i in zip(negatives[C.USER_ID], negatives[C.ITEM_ID], strict=True))
    assert set(negatives[C.ITEM_ID]) <= set(positives[C.ITEM_ID])  # the target domain's item pool
    first = positives.groupby(C.ITEM_ID)[C.EVENT_TIME].min()  # an item exists from its first interaction
    assert (first.reindex(negatives[C.ITEM_ID]).to_numpy() <= negatives[C.EVENT_TIME].to_numpy()).all()
    assert not set(negatives[C.ITEM_ID]) & set(beh[C.ITEM_ID])  # never a source item


def _digest(root: Path) -> str:
    """Hash of every parquet file's bytes under root."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.parquet")):
        h.update(p.read_bytes())
    return h.hexdigest()


def test_negative_sampling_is_seeded(tmp_path: Path) -> None:
    """Same seed, same bytes; another seed, other negatives."""
    tbl = read_c2dsr(_c2dsr(tmp_path / "d"), "food", "kitchen")
    digests = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        import_interactions(tbl, "food", "kitchen", tmp_path / name, Protocol(seed=seed),
                            shared_item_ids=True)
        digests.append(_digest(tmp_path / name))
    assert digests[0] == digests[1] != digests[2]


def test_title_pseudo_categories_group_similar_titles(tmp_path: Path) -> None:
    """Titles sharing their words land in one pseudo-category, and the importer writes it as category_id."""
    words = [("green tea matcha powder", 12), ("chef knife steel blade", 12), ("cast iron skillet pan", 12)]
    rows = [(f"BX{g * 100 + k:08d}", f"{w} pack {k}") for g, (w, n) in enumerate(words) for k in range(n)]
    path = tmp_path / "titles.tsv"
    path.write_text("asin\ttitle\n" + "".join(f"{a}\t{t}\n" for a, t in rows))
    cats = pseudo_categories(read_titles(path), 3, dim=4, seed=0).to_pandas()
    groups = cats.assign(g=cats["item"].str[2:].astype(int) // 100).groupby("g")["category_id"]
    assert (groups.nunique() == 1).all() and groups.first().nunique() == 3
    std = pa.table({"user": ["u1"] * 3 + ["u2"], "item": ["s1", "BX00000000", "BX00000100", "BX00000001"],
                    "domain": ["src", "tgt", "tgt", "tgt"], "rating": pa.nulls(4, pa.float64()),
                    "ts": [1, 2, 3, 4], "pos": [0, 1, 2, 3]})
    import_interactions(std, "src", "tgt", tmp_path / "z", Protocol(negatives=1, eval_negatives=1),
                        pa.table({"item": cats["item"], "category_id": cats["category_id"]}),
                        shared_item_ids=True)
    items = read_table(tmp_path / "z", C.ITEMS).to_pandas().set_index(C.ITEM_ID)
    assert items[C.CATEGORY_ID].notna().sum() == 3  # the three titled items; "s1" has no title


@pytest.mark.parametrize("spec", ["item=1", "user=0,item=1,stars=2", "user0,item=1"])
def test_bad_columns_are_named(spec: str) -> None:
    """A column mapping without user/item, with an unknown role or without '=' is refused by name."""
    with pytest.raises(InteractionImportError, match="--columns"):
        parse_columns(spec)


def test_mixed_rated_and_unrated_rows_are_refused(tmp_path: Path) -> None:
    """Half the rows with a rating is neither protocol: one clear error."""
    tbl = _douban(tmp_path)
    mixed = tbl.set_column(3, "rating", pa.array([4.0, None, 2.0, 3.0, 5.0, 1.0, 4.0], pa.float64()))
    with pytest.raises(InteractionImportError, match="no rating"):
        import_interactions(mixed, "book", "music", tmp_path / "z")


def test_cli_imports_and_errors_in_one_line(tmp_path: Path) -> None:
    """`dacdr import interactions` writes a contract zone; a wrong domain name is one error line, exit 2."""
    _ratings(tmp_path / "b.tsv", [(1, 7, 4), (2, 7, 2)])
    _ratings(tmp_path / "m.tsv", [(1, 7, 5), (2, 8, 1)])
    args = ["import", "interactions", "--file", f"{tmp_path / 'b.tsv'}:book",
            "--file", f"{tmp_path / 'm.tsv'}:music", "--source-domain", "book", "--out", str(tmp_path / "z")]
    res = CliRunner().invoke(app, [*args, "--target-domain", "music"])
    assert res.exit_code == 0, res.output
    assert check_contract(tmp_path / "z")[C.IMPRESSIONS] == 2
    res = CliRunner().invoke(app, [*args, "--target-domain", "films", "--out", str(tmp_path / "z2")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "films" in res.output
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep").write_text("x")
    res = CliRunner().invoke(app, [*args[:-2], "--out", str(foreign), "--target-domain", "music"])
    assert res.exit_code == 2 and (foreign / "keep").read_text() == "x"  # never replaced without --force
    res = CliRunner().invoke(app, ["import", "c2dsr", "--data", str(tmp_path), "--domains", "a,b",
                                   "--source-domain", "a", "--out", str(tmp_path / "z3")])
    assert res.exit_code == 2 and "items_x.txt" in res.output
