"""Hugging Face text classifiers: an ``AutoModelForSequenceClassification`` folder with its
tokenizer (``save_pretrained``), loaded offline, from safetensors only (a pickled
``pytorch_model.bin`` needs ``trust_checkpoint``) and never with remote code (a config with an
``auto_map`` is refused). :class:`TextClassifier` wraps the model as a module of token ids
``(N, L) -> logits`` whose attention mask is built from the pad id, the form the text methods
(:mod:`audit.saliency.tokens`, :mod:`audit.robustness.text_attacks`) take.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audit.errors import CheckpointError
from audit.loading.hf import _first_line, _quiet, _transformers, _weights


class TokenIdClassifier(nn.Module):
    """``ids (N, L) -> logits``: the Hugging Face model with ``attention_mask = ids != pad``."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.hf = model
        self.pad_id = int(pad_id)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits


@dataclass
class TextClassifier:
    """A text model with its tokenizer: ``encode`` texts to padded ids, ``proba`` texts to
    class probabilities; ``embedding`` is the token-embedding layer (for Integrated
    Gradients)."""

    model: TokenIdClassifier
    tokenizer: Any
    classes: list[str]
    max_length: int
    source: str

    @property
    def pad_id(self) -> int:
        return self.model.pad_id

    @property
    def embedding(self) -> nn.Module:
        get = getattr(self.model.hf, "get_input_embeddings")  # noqa: B009 (typed as Tensor)
        emb = get()
        assert isinstance(emb, nn.Module)
        return emb

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Token ids ``(N, max_length)``, special tokens added, padded and truncated."""
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="np")
        return torch.from_numpy(np.asarray(enc["input_ids"], dtype=np.int64))

    def proba(self, texts: list[str], batch: int = 64) -> np.ndarray:
        """Class probabilities ``(N, C)``, in batches, without gradients."""
        ids = self.encode(texts)
        with torch.no_grad():
            out = [torch.softmax(self.model(ids[i:i + batch]).float(), 1) for i in
                   range(0, len(ids), batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)))


def is_hf_text_folder(path: Path) -> bool:
    """A folder whose ``config.json`` names a ``...ForSequenceClassification`` model."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    archs = config.get("architectures") or []
    return isinstance(archs, list) and any(str(a).endswith("ForSequenceClassification")
                                           for a in archs)


def load_hf_text_folder(path: Path, *, trust_checkpoint: bool = False,
                        max_length: int = 128) -> TextClassifier:
    """Load ``path`` (module doc); :class:`CheckpointError` with one line on any problem."""
    transformers = _transformers(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}/config.json is not readable JSON ({_first_line(e)})") \
            from None
    if config.get("auto_map"):
        raise CheckpointError(f"{path}/config.json maps to custom code (auto_map); audit "
                              "never runs a model's own Python code")
    if not is_hf_text_folder(path):
        raise CheckpointError(f"{path}: config.json names no ...ForSequenceClassification "
                              "architecture; not a text classifier")
    weights, fmt = _weights(path, trust_checkpoint)
    with _quiet(transformers):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False,
                use_safetensors=fmt == "hf-safetensors")
        except Exception as e:  # transformers raises many kinds; one line names it
            raise CheckpointError(f"{path}: the model or its tokenizer could not be loaded "
                                  f"({_first_line(e)})") from None
    if tokenizer.pad_token_id is None:
        raise CheckpointError(f"{path}: the tokenizer has no pad token; set one and save it "
                              "again (tokenizer.pad_token = ...)")
    labels = model.config.id2label or {}
    classes = [str(labels.get(i, labels.get(str(i), i))) for i in range(model.config.num_labels)]
    limit = int(getattr(model.config, "max_position_embeddings", max_length) or max_length)
    return TextClassifier(model=TokenIdClassifier(model.eval(), tokenizer.pad_token_id),
                          tokenizer=tokenizer, classes=classes,
                          max_length=min(max_length, limit), source=str(weights))
