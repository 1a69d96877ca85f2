"""Feast feature services: one per model version, used by training and serving alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, FileSource, PushSource

from features.feature_repo.entities import ENTITIES
from features.feature_repo.sources import make_sources
from features.feature_repo.views import Views, domain_features_in, make_views

# The model version's feature service: everything the model needs about the request's user and
# target domain. Candidate items' side info comes from the item_side_info view (its key is the item).
DACDR_V1 = "dacdr_v1"


def make_services(views: Views) -> list[FeatureService]:
    """The feature services over `views` (one per model version)."""
    return [
        FeatureService(
            name=DACDR_V1,
            features=[views.user_sequences, views.user_activity, views.domain_features],
            description="DACDR v1: user source-domain sequences, activity and target-domain features.",
        )
    ]


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of a repo whose data lives in one folder."""

    entities: list[Entity]
    sources: list[FileSource | PushSource]
    views: Views
    services: list[FeatureService]

    def objects(self) -> list[Entity | FileSource | FeatureView | FeatureService]:
        """All objects, in the order FeatureStore.apply takes them."""
        return [*self.entities, *self.sources, *self.views.all(), *self.services]


def make_definitions(data_dir: Path) -> Definitions:
    """All definitions for the parquet files under `data_dir` (built by `features.store.build`)."""
    sources = make_sources(data_dir)
    views = make_views(sources, domain_features_in(data_dir))
    return Definitions(
        entities=list(ENTITIES),
        sources=sources.all(),
        views=views,
        services=make_services(views),
    )
