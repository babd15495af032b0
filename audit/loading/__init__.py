"""Loading checkpoints safely (:mod:`audit.loading.checkpoint`, pickle safety in
:mod:`audit.loading.pickles`, ``--arch`` in :mod:`audit.loading.arch`), TorchScript and
torch.export models with hookable layers (:mod:`audit.loading.scripted`,
:mod:`audit.loading.exported`) and the normalising wrapper that puts a card's mean/std inside
the model (:mod:`audit.loading.normalize`)."""

from audit.loading.arch import import_arch
from audit.loading.checkpoint import (
    LoadedModel,
    bundled_models,
    hookable,
    infer_card,
    load_model,
    resolve,
    sniff,
)
from audit.loading.normalize import Normalize, NormalizedModel
from audit.loading.pickles import is_safe_global, pickle_globals

__all__ = [
    "LoadedModel",
    "Normalize",
    "NormalizedModel",
    "bundled_models",
    "hookable",
    "import_arch",
    "infer_card",
    "is_safe_global",
    "load_model",
    "pickle_globals",
    "resolve",
    "sniff",
]
