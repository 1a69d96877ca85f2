"""A bounded background parquet writer: the next chunk is generated while the last one is written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from features.io import write_table


class BackgroundWriter:
    """Writes parquet files on one background thread (pyarrow releases the GIL) while the next chunk
    is generated; at most `depth` tables wait, so memory stays bounded. Errors surface on close()."""

    def __init__(self, depth: int = 2) -> None:
        """Start the writer thread."""
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simwrite")
        self._pending: list = []
        self._depth = depth

    def submit(self, tbl: pa.Table, path: Path, dictionary_columns: list[str] | None = None) -> None:
        """Queue one file; blocks while `depth` files are already waiting."""
        while len(self._pending) >= self._depth:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(write_table, tbl, path, dictionary_columns))

    def close(self) -> None:
        """Wait for every queued file; re-raise the first error."""
        try:
            for fut in self._pending:
                fut.result()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True)


