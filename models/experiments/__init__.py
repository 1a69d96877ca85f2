"""The paper's two experiments: multi-domain CTR (Table 2) and cold-start rating transfer (Table 3).

config.py: model lists, shared budget, grids; common.py: training one model (custom_drivers);
data.py: source rows; multidomain.py / coldstart.py / sequential.py (leave-last-out ranking on implicit
data): one experiment each; report.py: report.md and charts.
"""

from models.experiments.coldstart import coldstart, coldstart_split
from models.experiments.common import Tensors, _day_start_us, custom_drivers, fit_one, tune_and_train
from models.experiments.config import (
    COLDSTART_MODELS,
    CTR_MODELS,
    RESULT_COLUMNS_CTR,
    RESULT_COLUMNS_RATING,
    TRAIN_ROWS,
    ExperimentConfig,
    default_grids,
    quick_config,
)
from models.experiments.data import source_rows
from models.experiments.multidomain import multidomain
from models.experiments.report import PAPER_TABLE2, PAPER_TABLE3
from models.experiments.sequential import leave_last_out

__all__ = [
    "COLDSTART_MODELS",
    "CTR_MODELS",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "RESULT_COLUMNS_CTR",
    "RESULT_COLUMNS_RATING",
    "TRAIN_ROWS",
    "ExperimentConfig",
    "Tensors",
    "_day_start_us",
    "coldstart",
    "coldstart_split",
    "custom_drivers",
    "default_grids",
    "fit_one",
    "leave_last_out",
    "multidomain",
    "quick_config",
    "source_rows",
    "tune_and_train",
]
