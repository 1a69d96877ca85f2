"""Amazon review file formats: names, CLI aliases, file names (below both the importer and the generator)."""

from __future__ import annotations

FORMAT_2014 = "ratings2014"  # user,item,rating,timestamp (no header)
FORMAT_2018 = "ratings2018"  # item,user,rating,timestamp (no header)
FORMAT_5CORE = "5core"  # JSON lines: reviewerID, asin, overall, unixReviewTime
FORMATS: tuple[str, ...] = (FORMAT_2014, FORMAT_2018, FORMAT_5CORE)
# the short names the CLI's --format takes; the long names are accepted too
FORMAT_ALIASES: dict[str, str] = {"2014": FORMAT_2014, "2018": FORMAT_2018, "5core": FORMAT_5CORE}
FORMAT_CHOICES = "2014 (user,item,rating,ts), 2018 (item,user,rating,ts) or 5core (JSON lines)"


def parse_format(name: str) -> str:
    """A format name or alias ('2014', 'ratings2014', ...) as one of FORMATS; ValueError otherwise."""
    key = name.strip().lower()
    if key in FORMATS:
        return key
    if key in FORMAT_ALIASES:
        return FORMAT_ALIASES[key]
    raise ValueError(f"unknown format {name!r}: choose {FORMAT_CHOICES}")


def file_name(fmt: str, category: str) -> str:
    """The file name the public dumps use for a category in a format."""
    return {
        FORMAT_2014: f"ratings_{category}.csv",
        FORMAT_2018: f"{category}.csv",
        FORMAT_5CORE: f"{category}_5.json.gz",
    }[fmt]
