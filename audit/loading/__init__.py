"""Loading checkpoints safely (:mod:`audit.loading.checkpoint`) and the normalising wrapper that
puts a card's mean/std inside the model (:mod:`audit.loading.normalize`)."""

from audit.loading.checkpoint import (
    LoadedModel,
    bundled_models,
    import_arch,
    infer_card,
    is_safe_global,
    load_model,
    pickle_globals,
    resolve,
    sniff,
)
from audit.loading.normalize import Normalize, NormalizedModel

__all__ = [
    "LoadedModel",
    "Normalize",
    "NormalizedModel",
    "bundled_models",
    "import_arch",
    "infer_card",
    "is_safe_global",
    "load_model",
    "pickle_globals",
    "resolve",
    "sniff",
]
