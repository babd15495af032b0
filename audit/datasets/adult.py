"""The UCI Adult (census income) data, bundled in ``audit/datasets/files/``.

Official split: ``adult.data`` (32,561 rows) is ``train``, ``adult.test`` (16,281 rows) is
``test``; the test file's first line (a comment) is skipped and its labels' trailing ``.`` is
stripped. Task: income ``>50K`` (class 1) against ``<=50K`` (class 0).

Columns: age, workclass, fnlwgt, education, education_num, marital_status, occupation,
relationship, race, sex, capital_gain, capital_loss, hours_per_week, native_country, income.

Missing values: UCI marks unknown values with ``?`` (workclass, occupation and native_country in
about 7% of rows). Rows are kept; in the raw frame (``extras["frame"]``) the ``?`` become NaN, and
the encoder turns them into an explicit category ``missing`` (features such as
``occupation=missing``), so the model and its explanations can see that a value was unknown.

Features: ``fnlwgt`` is the census sampling weight (how many people a row stands for), not an
attribute of the person, so it is not a model input; ``education`` is dropped because
``education_num`` is the same information as an ordered number. The other 12 columns are
encoded by :class:`~audit.datasets.tabular.TabularEncoder` (5 numeric, 7 categorical).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from audit.datasets import register_dataset
from audit.datasets.files import CSV_LOADERS
from audit.datasets.tabular import TabularEncoder, load_encoded_csv
from audit.subject import AuditData

if TYPE_CHECKING:
    import pandas as pd

FILES = Path(__file__).resolve().parent / "files"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
           "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
           "hours_per_week", "native_country", "income"]
NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "marital_status", "occupation", "relationship", "race", "sex",
               "native_country"]
DROPPED = ["fnlwgt", "education"]
TARGET = "income"
CLASSES = ["<=50K", ">50K"]
SENSITIVE = ["sex", "race"]


def read_raw(split: str) -> pd.DataFrame:
    """The raw Adult rows of ``split`` as a DataFrame with clear column names; ``?`` -> NaN."""
    import pandas as pd

    name = "adult.data.gz" if split == "train" else "adult.test.gz"
    frame = pd.read_csv(FILES / name, header=None, names=COLUMNS, skipinitialspace=True,
                        skiprows=0 if split == "train" else 1, na_values=["?"],
                        keep_default_na=False)
    frame[TARGET] = frame[TARGET].str.rstrip(".")
    return frame


@lru_cache(maxsize=1)
def encoder() -> TabularEncoder:
    """The Adult encoder, fitted on the train split."""
    return TabularEncoder.fit(read_raw("train"), NUMERIC, CATEGORICAL, target=TARGET,
                              dropped=DROPPED)


@lru_cache(maxsize=2)
def _split(split: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = read_raw(split)
    x = encoder().transform(frame, where=f"adult/{split}")
    y = (frame[TARGET] == ">50K").to_numpy().astype(np.int64)
    return frame, x, y


@register_dataset("adult")
def load(split: str, seed: int = 0) -> AuditData:
    """Adult ``split`` encoded for ``adult-mlp``: x float32 in [0, 1] (``F`` one-hot and scaled
    features), y = income > 50K. ``seed`` is unused (the official split is fixed)."""
    frame, x, y = _split(split)
    enc = encoder()
    return AuditData(name=f"adult/{split}", x=torch.from_numpy(x.copy()),
                     y=torch.from_numpy(y.copy()), kind="tabular", classes=list(CLASSES),
                     feature_names=enc.feature_names, source="bundled:adult",
                     extras={"frame": frame.copy(), "encoder": enc,
                             "sensitive": list(SENSITIVE)})


CSV_LOADERS["adult"] = load_encoded_csv
CSV_LOADERS.setdefault("*", load_encoded_csv)
