"""Bundled model architectures and the recipes that reproduce the checkpoints in ``models/``.

Each recipe is registered by name and run by ``audit train NAME``; it trains on CPU with a fixed
seed and writes ``model.safetensors`` + ``card.json`` into ``models/NAME`` (or ``--out``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audit.card import ModelCard
from audit.errors import UsageError
from audit.plugins import import_plugins

# Modules that register recipes when imported. A new bundled model adds its module here.
_RECIPE_MODULES = [
    "audit.zoo.digits",
    "audit.zoo.shapes",
    "audit.zoo.adult",
    "audit.zoo.robust",
    "audit.zoo.smoothed",
    "audit.zoo.vit",
]


@dataclass(frozen=True)
class Recipe:
    """How to train one bundled model: ``train(out_dir, seed, quiet)`` returns the card written."""

    name: str
    description: str
    train: Callable[[Path, int, bool], ModelCard]
    default_seed: int = 0


_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a recipe to the registry (called at import time by recipe modules)."""
    _RECIPES[recipe.name] = recipe
    return recipe


def recipes() -> dict[str, Recipe]:
    """All registered recipes by name."""
    import_plugins(_RECIPE_MODULES)
    return dict(_RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; :class:`UsageError` lists the known names otherwise."""
    all_recipes = recipes()
    if name not in all_recipes:
        raise UsageError(f"no recipe named {name!r}; known: {', '.join(sorted(all_recipes))}")
    return all_recipes[name]

