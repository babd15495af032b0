"""``digits-cnn``: a small CNN for scikit-learn's 8x8 digits (>= 98% test accuracy)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.datasets import load_dataset
from audit.training import TrainConfig, random_shift, reproducible, save_bundle
from audit.zoo import Recipe, register_recipe
from audit.zoo.common import accuracy, fit_recipe


class DigitsCNN(nn.Module):
    """conv(32)-conv(64)-pool-conv(128)-pool-fc(128)-fc(10) on (1, 8, 8) inputs in [0, 1]."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * w * 4, 128), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


EPOCHS = 40
LR = 3e-3
BATCH = 64


def train(out_dir: Path, seed: int = 0, quiet: bool = False) -> ModelCard:
    """Train digits-cnn on the digits train split and write the bundle to ``out_dir``."""
    train_data, test_data = load_dataset("digits", "train"), load_dataset("digits", "test")
    with reproducible(seed):
        model = DigitsCNN()
        start = time.perf_counter()
        config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, weight_decay=1e-4,
                             seed=seed)
        fit_recipe(model, train_data.x, train_data.y, config, augment=random_shift)
        seconds = time.perf_counter() - start
    acc = accuracy(model, test_data.x, test_data.y)
    card = ModelCard(
        name="digits-cnn", arch="audit.zoo.digits:DigitsCNN", arch_kwargs={},
        input=InputSpec(shape=(1, 8, 8), range=(0.0, 1.0), kind="image"),
        classes=list(train_data.classes), dataset="digits",
        metrics={"test_accuracy": round(acc, 4), "train_seconds": round(seconds, 1)},
        recipe={"command": f"audit train digits-cnn --seed {seed}", "seed": seed,
                "epochs": EPOCHS, "optimizer": "AdamW(lr=3e-3, weight_decay=1e-4), one-cycle",
                "batch_size": BATCH, "augmentation": "random shift up to 1 pixel",
                "data": "digits/train (1437 images); metrics on digits/test (360)",
                "torch": torch.__version__, "threads": 1},
        description="Small CNN classifying scikit-learn's 8x8 handwritten digits.",
        intended_use="Demonstration and testing of audits; not for production digit reading.",
        limitations="8x8 grey images only, scaled to [0, 1]; trained on 1437 images from a "
                    "few dozen writers, so it will not generalise to other handwriting sources.",
        robustness={"linf_eps": [0.03, 0.05, 0.1, 0.2], "l2_eps": [0.25, 0.5, 1.0, 2.0]},
        verdict={"expected": "pass",
                 "reason": "Accurate on its test data and claims no robustness: its fragility "
                           "to attacks is a medium exposure, not a defect of its stated use."},
    )
    save_bundle(model, card, out_dir)
    return card


register_recipe(Recipe(name="digits-cnn", description="CNN on sklearn digits (8x8)",
                       train=train))
