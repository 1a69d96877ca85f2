"""Seeded multi-domain log simulator: a rich source domain, sparse shifted target domains, a late new one.

Rooms: `world` (presets, domains, the latent users/items built from (preset, seed)), `clicks` (the
click model: true click probability, examination curve, the Responder that clicks on served slates),
`tables` (a day's rows of each table), `writer` (background parquet writer), `run` (simulate() and
the readers of its `_truth/`), `traffic` (`simulate online`: simulated users driving live services).
The oracle evaluation (AUC of the true click probability) lives beside the metrics, in models/oracle.py.
"""

from features.simulator.clicks import PURCHASE_RATE, Responder, Responses, click_probability, examination
from features.simulator.run import (
    DomainStats,
    SimulationSummary,
    read_manifest,
    read_table_truth,
    simulate,
    summary_dict,
    truth_of_test_day,
)
from features.simulator.world import (
    ITEM_ID_BASE,
    MANIFEST,
    N_DAYS,
    ONBOARD,
    ONBOARD_DIR,
    P_CLICK,
    PRESETS,
    SOURCE_DOMAIN,
    START_DATE,
    TARGETS,
    TRUTH_COLUMNS,
    TRUTH_DIR,
    USER_ID_BASE,
    DomainSpec,
    LatentState,
    PresetConfig,
    affinity,
    click_logit,
    latent_state,
    state_item_ids,
    state_user_ids,
    target_specs,
)

__all__ = [
    "ITEM_ID_BASE", "MANIFEST", "N_DAYS", "ONBOARD", "ONBOARD_DIR", "PRESETS", "PURCHASE_RATE", "P_CLICK",
    "SOURCE_DOMAIN", "START_DATE", "TARGETS", "TRUTH_COLUMNS", "TRUTH_DIR", "USER_ID_BASE", "DomainSpec",
    "DomainStats", "LatentState", "PresetConfig", "Responder", "Responses", "SimulationSummary", "affinity",
    "click_logit", "click_probability", "examination", "latent_state", "read_manifest", "read_table_truth",
    "simulate", "state_item_ids", "state_user_ids", "summary_dict", "target_specs", "truth_of_test_day",
]
