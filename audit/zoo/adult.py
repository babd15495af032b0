"""``adult-mlp``: a small MLP predicting income > 50K on the UCI Adult data (about 85% accuracy).

The inputs are the Adult encoder's features (numeric columns min-max scaled to [0, 1], categorical
columns one-hot), so the model's input space is ``[0, 1]^F`` and attack budgets are fractions of
each numeric column's training range. The encoder is stored in the card (``extra["encoder"]``)
so that user CSV files of raw Adult columns are encoded the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.datasets import load_dataset
from audit.datasets.adult import CATEGORICAL, DROPPED, NUMERIC, SENSITIVE, TARGET
from audit.training import TrainConfig, reproducible, save_bundle
from audit.zoo import Recipe, register_recipe
from audit.zoo.common import accuracy, fit_recipe


class AdultMLP(nn.Module):
    """fc(in, hidden) - ReLU - dropout - fc(hidden, hidden/2) - ReLU - fc(hidden/2, classes)."""

    def __init__(self, in_features: int, num_classes: int = 2, hidden: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


EPOCHS = 20
LR = 3e-3
BATCH = 256
HIDDEN = 64
WEIGHT_DECAY = 1e-4


def train(out_dir: Path, seed: int = 0, quiet: bool = False) -> ModelCard:
    """Train adult-mlp on the Adult train split and write the bundle to ``out_dir``."""
    train_data, test_data = load_dataset("adult", "train"), load_dataset("adult", "test")
    n_features = int(train_data.x.shape[1])
    with reproducible(seed):  # tiny matrices: one thread is fastest and bitwise reproducible
        model = AdultMLP(n_features, len(train_data.classes), hidden=HIDDEN)
        start = time.perf_counter()
        config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR,
                             weight_decay=WEIGHT_DECAY, seed=seed)
        fit_recipe(model, train_data.x, train_data.y, config)
        seconds = time.perf_counter() - start
    acc = accuracy(model, test_data.x, test_data.y)
    base_rate = float(test_data.y.float().mean())
    encoder = train_data.extras["encoder"]
    card = ModelCard(
        name="adult-mlp", arch="audit.zoo.adult:AdultMLP",
        arch_kwargs={"in_features": n_features, "num_classes": len(train_data.classes),
                     "hidden": HIDDEN},
        input=InputSpec(shape=(n_features,), range=(0.0, 1.0), kind="tabular",
                        feature_names=list(encoder.feature_names)),
        classes=list(train_data.classes), dataset="adult", target=TARGET,
        sensitive=list(SENSITIVE),
        metrics={"test_accuracy": round(acc, 4),
                 "majority_baseline_accuracy": round(max(base_rate, 1 - base_rate), 4),
                 "train_seconds": round(seconds, 1)},
        recipe={"command": f"audit train adult-mlp --seed {seed}", "seed": seed,
                "epochs": EPOCHS, "batch_size": BATCH,
                "optimizer": f"AdamW(lr={LR}, weight_decay={WEIGHT_DECAY}), one-cycle",
                "threads": 1,
                "data": f"adult/train ({len(train_data)} rows, official adult.data); metrics on "
                        f"adult/test ({len(test_data)} rows, official adult.test)",
                "torch": torch.__version__},
        description="MLP predicting whether a person's income exceeds $50K/year from 1994 US "
                    "census attributes (UCI Adult).",
        intended_use="Demonstration and testing of tabular audits (surrogates, fairness, "
                     "robustness); not for decisions about people.",
        limitations="Trained on the 1994 census; incomes and occupations have changed since. "
                    "The model uses sex and race as inputs (as the standard Adult benchmark "
                    "does), so expect group differences that a fairness audit should examine. "
                    "Missing values ('?') are an explicit 'missing' category.",
        robustness={"linf_eps": [0.01, 0.02, 0.05, 0.1], "l2_eps": [0.05, 0.1, 0.25, 0.5]},
        verdict={"expected": "fail",
                 "reason": "It selects women and several race groups for the positive class "
                           "at under four fifths of the rate of others (fairness.four-fifths): "
                           "a fairness defect for any use about people."},
        training_data={
            "name": "UCI Adult (Census Income)", "source": "https://archive.ics.uci.edu/dataset/2/adult",
            "rows": len(train_data), "positive_rate": round(float(train_data.y.float().mean()), 4),
            "features": {"numeric": NUMERIC, "categorical": CATEGORICAL,
                         "not_used": {"fnlwgt": "census sampling weight, not a person's "
                                                "attribute", "education": "same information "
                                                "as education_num"}},
            "missing_values": "'?' in workclass, occupation, native_country -> category "
                              "'missing'",
        },
        extra={"encoder": encoder.to_dict(), "dropped_columns": list(DROPPED)},
    )
    save_bundle(model, card, out_dir)
    return card


register_recipe(Recipe(name="adult-mlp", description="MLP on UCI Adult (income > 50K)",
                       train=train))
