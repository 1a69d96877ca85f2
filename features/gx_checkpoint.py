"""Great Expectations for one validation run: an ephemeral context, a Checkpoint per table, and
the Data Docs site under OUT/data_docs (features.validation decides with what it returns)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features import suites

_DOCS_SITE = "dacdr"


class GxRun:
    """One ephemeral GX context per run, rendering Data Docs into OUT/data_docs."""

    def __init__(self, docs_dir: Path) -> None:
        """Create the context and point its only Data Docs site at `docs_dir`."""
        # GX logs lines at INFO on import and per store and temp folder: kept off the user's terminal
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self._gx = gx
        # in-memory stores and no temporary docs site (the default makes, and logs, a temp folder)
        stores = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
        config = DataContextConfig(store_backend_defaults=stores)
        self.ctx = gx.get_context(mode="ephemeral", project_config=config)
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.ctx.add_data_docs_site(
            _DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self.source = self.ctx.data_sources.add_pandas("dacdr")
        self.docs_dir = docs_dir

    def validate(self, table: str, dt: str, frame: pd.DataFrame, suite: Any) -> dict[str, dict[str, Any]]:
        """Run `suite` over the batch with a Checkpoint; per rule: success, unexpected rows, observed."""
        gx = self._gx
        from great_expectations.core.run_identifier import RunIdentifier

        asset = self.source.add_dataframe_asset(table)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{table}-dt={dt}")
        suite = self.ctx.suites.add(suite)
        vdef = self.ctx.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch_def, suite=suite)
        )
        checkpoint = self.ctx.checkpoints.add(
            gx.Checkpoint(name=f"dacdr.{table}", validation_definitions=[vdef], result_format="BASIC")
        )
        run_id = RunIdentifier(run_name=f"dt={dt}", run_time=datetime.now(UTC))
        # copy-on-write: GX's pandas engine selects rows with df[mask] for each metric, and a mask that
        # keeps every row returns a full deep copy of the batch without it (a lazy one with it)
        with pd.option_context("mode.copy_on_write", True):
            run = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
        (result,) = run.run_results.values()
        out: dict[str, dict[str, Any]] = {}
        for r in result.results:
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX could not evaluate {r.expectation_config.type}: {r.exception_info}")
            meta = r.expectation_config.meta or {}
            out[meta[suites.META_RULE]] = {
                "success": bool(r.success),
                "unexpected_count": r.result.get("unexpected_count"),
                "observed_value": r.result.get("observed_value"),
                "level": meta[suites.META_LEVEL],
            }
        return out

    def build_docs(self) -> str:
        """Render the Data Docs of every validation of this run; returns the index page path."""
        self.ctx.build_data_docs(site_names=[_DOCS_SITE])
        return self.index()

    def index(self) -> str:
        """Path of the Data Docs index page."""
        return str(self.docs_dir / "index.html")
