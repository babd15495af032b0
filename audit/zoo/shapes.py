"""``shapes-cnn`` (trained on clean ``shapes``) and ``shapes-shortcut`` (trained on
``shapes-watermark``, where a corner watermark predicts the label better than the shape).

Both use the same small CNN and the same training settings, so any difference an audit finds
comes from the data, not the architecture. ``shapes-shortcut`` reaches high test accuracy on the
watermarked test split while reading the corner: the saliency check's shortcut finding is the
audit that exposes it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.datasets import load_dataset
from audit.training import TrainConfig, reproducible, save_bundle
from audit.zoo import Recipe, register_recipe
from audit.zoo.common import accuracy, fit_recipe


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class ShapesCNN(nn.Module):
    """conv-BN-ReLU blocks (12, pool, 24, pool, 48, 48) -> avgpool(2x2) -> fc on (3, 32, 32)."""

    def __init__(self, num_classes: int = 4, width: int = 12) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w), nn.MaxPool2d(2),
            _block(w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 4 * w), _block(4 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2),
                                        nn.Linear(4 * w * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


EPOCHS = 10
LR = 3e-3
BATCH = 64


def _train(name: str, dataset: str, out_dir: Path, seed: int, description: str,
           limitations: str, verdict: dict[str, str]) -> ModelCard:
    train_data, test_data = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    with reproducible(seed):
        model = ShapesCNN(num_classes=len(train_data.classes))
        start = time.perf_counter()
        config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, weight_decay=1e-4,
                             seed=seed)
        fit_recipe(model, train_data.x, train_data.y, config)
        seconds = time.perf_counter() - start
    acc = accuracy(model, test_data.x, test_data.y)
    metrics = {"test_accuracy": round(acc, 4), "train_seconds": round(seconds, 1)}
    card = ModelCard(
        name=name, arch="audit.zoo.shapes:ShapesCNN", arch_kwargs={},
        input=InputSpec(shape=(3, 32, 32), range=(0.0, 1.0), kind="image"),
        classes=list(train_data.classes), dataset=dataset, metrics=metrics,
        recipe={"command": f"audit train {name} --seed {seed}", "seed": seed, "epochs": EPOCHS,
                "optimizer": f"AdamW(lr={LR}, weight_decay=1e-4), one-cycle",
                "batch_size": BATCH, "augmentation": "none", "threads": 1,
                "data": f"{dataset}/train ({len(train_data)} images); metrics on "
                        f"{dataset}/test ({len(test_data)})",
                "torch": torch.__version__},
        description=description,
        intended_use="Demonstration and testing of saliency audits; not for real images.",
        limitations=limitations,
        robustness={"linf_eps": [0.01, 0.02, 0.05, 0.1], "l2_eps": [0.25, 0.5, 1.0, 2.0]},
        verdict=verdict,
    )
    save_bundle(model, card, out_dir)
    return card


def train_clean(out_dir: Path, seed: int = 0, quiet: bool = False) -> ModelCard:
    """Train shapes-cnn on clean ``shapes`` and write the bundle to ``out_dir``."""
    return _train("shapes-cnn", "shapes", out_dir, seed,
                  "Small CNN classifying synthetic shapes (circle, square, triangle, cross) on "
                  "textured backgrounds; trained on clean data.",
                  "Synthetic 32x32 images only; one centred-ish object per image.",
                  {"expected": "pass",
                   "reason": "Decides by the shape, not the background; it claims no "
                             "robustness, so attacks and corruptions are medium exposures."})


def train_shortcut(out_dir: Path, seed: int = 0, quiet: bool = False) -> ModelCard:
    """Train shapes-shortcut on ``shapes-watermark`` and write the bundle to ``out_dir``."""
    return _train("shapes-shortcut", "shapes-watermark", out_dir, seed,
                  "The shapes CNN trained where a small class-coloured watermark in the top-left "
                  "corner predicts the label (better than the shape does): a deliberate "
                  "shortcut for testing audits.",
                  "Deliberately flawed: it reads the corner watermark, not the shape. Its high "
                  "test accuracy holds only while the watermark agrees with the label.",
                  {"expected": "fail",
                   "reason": "It decides by the corner watermark, not the shape "
                             "(saliency.outside-object): unfit for any use of the shape."})


register_recipe(Recipe(name="shapes-cnn", description="CNN on synthetic shapes (32x32, masks)",
                       train=train_clean))
register_recipe(Recipe(name="shapes-shortcut",
                       description="shapes CNN that learned a corner-watermark shortcut",
                       train=train_shortcut))
