"""Models and data the way a user has them, written into a folder of their own.

A user's project folder holds ``mynets.py`` (their architectures, importable only from that
folder), weights saved their way, a ``card.json`` they wrote and their data (``.npz`` images,
``.csv`` tables with categorical columns). Nothing here imports from ``audit.zoo``: the point is
to reach the tool the way someone who did not write it does.

- :func:`write_image_project`: a 5-class 3x32x32 CNN (BatchNorm, a residual block) trained a
  few epochs on oriented gratings, in one input convention: ``unit`` (floats in [0, 1]),
  ``byte`` (floats in 0..255), ``signed`` ([-1, 1]) or ``normalized`` (mean/std in the card,
  raw data in [0, 1]).
- :func:`write_tabular_project`: an MLP on a CSV with numeric and categorical columns (one of
  them, ``sex``, sensitive), binary or 3-class.
"""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODULE = textwrap.dedent('''
    """A user's own architectures (not part of the audit package)."""
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(x + self.bn2(self.conv2(h)))


    class Net(nn.Module):
        """5-class CNN on 3x32x32; ``scale``/``shift`` map the user's input convention to
        roughly [0, 1] inside (as a user's own preprocessing layer would)."""

        def __init__(self, classes=5, scale=1.0, shift=0.0):
            super().__init__()
            self.scale, self.shift = scale, shift
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(16), nn.ReLU())
            self.block = Block(16)
            self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(32, classes))

        def forward(self, x):
            x = (x - self.shift) * self.scale
            return self.head(self.down(self.block(self.stem(x))))


    class TabNet(nn.Module):
        def __init__(self, features=7, classes=2):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(features, 32), nn.ReLU(),
                                     nn.Linear(32, classes))

        def forward(self, x):
            return self.net(x)
''')

CONVENTIONS: dict[str, tuple[tuple[float, float], float, float]] = {
    # name: (card range, scale, shift) -- data = shift + unit / scale
    "unit": ((0.0, 1.0), 1.0, 0.0),
    "byte": ((0.0, 255.0), 1 / 255, 0.0),
    "signed": ((-1.0, 1.0), 0.5, -1.0),
    "normalized": ((0.0, 1.0), 1.0, 0.0),
}
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
IMAGE_CLASSES = ["0deg", "36deg", "72deg", "108deg", "144deg"]


@dataclass
class Project:
    """A user's folder: ``module`` is their ``mynets.py``; paths are absolute."""

    root: Path
    weights: Path
    card: Path
    train: Path
    test: Path
    arch: str


def gratings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Oriented sine gratings with noise, in [0, 1]: class k is orientation k * 36 degrees."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32
    theta = y * np.pi / 5 + rng.normal(0, 0.05, n)
    freq = rng.uniform(3, 5, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(2 * np.pi * freq[:, None, None] * (np.cos(theta)[:, None, None] * xx
                  + np.sin(theta)[:, None, None] * yy) + phase[:, None, None])
    colour = rng.uniform(0.3, 1.0, (n, 3, 1, 1))
    x = 0.5 + 0.35 * wave[:, None] * colour + rng.normal(0, 0.08, (n, 3, 32, 32))
    return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)


def _module(root: Path) -> Any:
    (root / "mynets.py").write_text(MODULE)
    return import_mynets(root)


def import_mynets(root: Path) -> Any:
    """The user's ``mynets`` module from ``root``, imported fresh and not left importable (the
    tests must find it the way the tool does, from the user's folder)."""
    sys.path.insert(0, str(root))
    try:
        sys.modules.pop("mynets", None)
        import mynets  # type: ignore[import-not-found]
        return mynets
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("mynets", None)


def _fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int,
         lr: float = 3e-3, seed: int = 0) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = order[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    model.eval()


def write_image_project(root: Path, convention: str = "unit", *, n_train: int = 600,
                        n_test: int = 200, epochs: int = 3, seed: int = 0,
                        uint8: bool = False) -> Project:
    """Train the user's CNN on gratings in ``convention`` and write weights (state dict),
    card and ``train.npz``/``test.npz`` (``uint8`` stores 0..255 images as bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    mynets = _module(root)
    (lo, hi), scale, shift = CONVENTIONS[convention]
    kwargs: dict[str, Any] = {} if convention in ("unit", "normalized") else \
        {"scale": scale, "shift": shift}
    model = mynets.Net(**kwargs)
    (xtr, ytr), (xte, yte) = gratings(n_train, seed), gratings(n_test, seed + 1)
    to_user = (lambda a: shift + a / scale)  # noqa: E731 -- [0, 1] to the convention
    train_in = torch.from_numpy(to_user(xtr))
    if convention == "normalized":  # the user's model expects normalised input
        m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        train_in = (train_in - m) / s
    _fit(model, train_in, torch.from_numpy(ytr), epochs, seed=seed)
    torch.save(model.state_dict(), root / "net.pt")
    for name, (xs, ys) in (("train", (xtr, ytr)), ("test", (xte, yte))):
        xs = to_user(xs)
        if uint8:
            xs = np.round(xs).astype(np.uint8)
        np.savez(root / f"{name}.npz", x=xs, y=ys)
    card: dict[str, Any] = {
        "name": f"user-cnn-{convention}", "arch": "mynets:Net", "arch_kwargs": kwargs,
        "input": {"kind": "image", "shape": [3, 32, 32], "range": [lo, hi]},
        "classes": IMAGE_CLASSES}
    if convention == "normalized":
        card["input"].update(mean=MEAN, std=STD)
    (root / "card.json").write_text(json.dumps(card, indent=1))
    return Project(root, root / "net.pt", root / "card.json", root / "train.npz",
                   root / "test.npz", "mynets:Net")


def tabular_frame(n: int, seed: int, classes: int = 2) -> Any:
    """A raw table: numeric ``age``, ``hours``; categorical ``sex`` (sensitive), ``region``;
    the label depends on age, hours and region (and, weakly, on sex)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 70, n)
    hours = rng.integers(10, 60, n)
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    region = rng.choice(["north", "south", "east"], n)
    score = (age - 40) / 15 + (hours - 35) / 12 + (region == "north") * 0.8 \
        + (sex == "M") * 0.4 + rng.normal(0, 0.6, n)
    if classes == 2:
        label = np.where(score > 0.3, "high", "low")
    else:
        label = np.select([score < -0.5, score < 0.9], ["low", "mid"], "high")
    return pd.DataFrame({"age": age, "hours": hours, "sex": sex, "region": region,
                         "income": label})


TAB_CLASSES = {2: ["low", "high"], 3: ["low", "mid", "high"]}


def encode(frame: Any) -> np.ndarray:
    """The user's own preprocessing: min-max over fixed ranges and one-hot (sorted levels),
    which the card's encoder states."""
    age = (frame["age"].to_numpy() - 18) / 52
    hours = (frame["hours"].to_numpy() - 10) / 50
    cols = [age, hours]
    for col, levels in (("sex", ["F", "M"]), ("region", ["east", "north", "south"])):
        cols += [(frame[col].to_numpy() == v).astype(float) for v in levels]
    return np.stack(cols, axis=1).astype(np.float32)


ENCODER = {"columns": ["age", "hours", "sex", "region"],
           "numeric": {"age": [18, 70], "hours": [10, 60]},
           "categorical": {"sex": ["F", "M"], "region": ["east", "north", "south"]},
           "target": "income"}


def write_tabular_project(root: Path, classes: int = 2, *, n_train: int = 1200,
                          n_test: int = 400, epochs: int = 15, seed: int = 0) -> Project:
    """Train the user's MLP on ``train.csv`` and write weights, card (with the encoder and
    ``sensitive: ["sex"]``) and ``test.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    mynets = _module(root)
    train, test = tabular_frame(n_train, seed, classes), tabular_frame(n_test, seed + 1, classes)
    names = TAB_CLASSES[classes]
    model = mynets.TabNet(features=7, classes=classes)
    y = torch.tensor([names.index(v) for v in train["income"]])
    _fit(model, torch.from_numpy(encode(train)), y, epochs, seed=seed)
    torch.save(model.state_dict(), root / "tab.pt")
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    card = {"name": f"user-mlp-{classes}", "arch": "mynets:TabNet",
            "arch_kwargs": {"features": 7, "classes": classes},
            "input": {"kind": "tabular", "shape": [7], "range": [0.0, 1.0]},
            "classes": names, "target": "income", "sensitive": ["sex"],
            "extra": {"encoder": ENCODER}}
    (root / "card.json").write_text(json.dumps(card, indent=1))
    return Project(root, root / "tab.pt", root / "card.json", root / "train.csv",
                   root / "test.csv", "mynets:TabNet")
