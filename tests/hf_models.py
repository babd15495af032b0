"""Tiny Hugging Face image classifiers saved as ``save_pretrained`` folders, for tests.

Each builder writes ``config.json`` + ``model.safetensors`` + a hand-written
``preprocessor_config.json`` (no image-processor class, so no torchvision or Pillow is needed)
into ``folder`` and returns it. Keyword arguments override the model config; ``preprocessor``
replaces the preprocessor config (``None``: the builder's default; ``{}``: write none).
The models are randomly initialised with a fixed seed and are tiny (32x32 input, a few
thousand parameters), so each builds and loads in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

LABELS = ["cat", "dog", "bird", "fish"]
"""The class names every builder writes into ``config.id2label`` (ids 0..3)."""

VIT_PREPROCESSOR: dict[str, Any] = {
    "image_processor_type": "ViTImageProcessor", "do_resize": True,
    "size": {"height": 32, "width": 32}, "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
DEIT_PREPROCESSOR: dict[str, Any] = {
    "image_processor_type": "DeiTImageProcessor", "do_resize": True,
    "size": {"height": 36, "width": 36}, "do_center_crop": True,
    "crop_size": {"height": 32, "width": 32}, "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}
CONVNEXT_PREPROCESSOR: dict[str, Any] = {
    "image_processor_type": "ConvNextImageProcessor", "do_resize": True,
    "size": {"shortest_edge": 32}, "crop_pct": 0.875, "do_rescale": True,
    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}


def _labels(n: int = len(LABELS)) -> dict[str, Any]:
    names = LABELS[:n]
    return {"id2label": dict(enumerate(names)), "label2id": {c: i for i, c in enumerate(names)}}


def _save(model: Any, folder: Path, preprocessor: dict[str, Any] | None,
          default: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    pre = default if preprocessor is None else preprocessor
    if pre:
        (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return folder


def tiny_vit(folder: Path, *, preprocessor: dict[str, Any] | None = None,
             **over: Any) -> Path:
    """A 2-layer ViT (hidden 32, patch 8, 32x32 images, 4 classes)."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "intermediate_size": 64, "image_size": 32, "patch_size": 8,
                          **_labels(), **over})
    return _save(ViTForImageClassification(config), folder, preprocessor, VIT_PREPROCESSOR)


def tiny_deit(folder: Path, *, teacher: bool = False,
              preprocessor: dict[str, Any] | None = None, **over: Any) -> Path:
    """A 2-layer DeiT (with the distillation head when ``teacher``), 32x32 crop of 36x36."""
    from transformers import (
        DeiTConfig,
        DeiTForImageClassification,
        DeiTForImageClassificationWithTeacher,
    )

    torch.manual_seed(0)
    config = DeiTConfig(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 64, "image_size": 32, "patch_size": 8,
                           **_labels(), **over})
    cls = DeiTForImageClassificationWithTeacher if teacher else DeiTForImageClassification
    return _save(cls(config), folder, preprocessor, DEIT_PREPROCESSOR)


def tiny_swin(folder: Path, *, preprocessor: dict[str, Any] | None = None,
              **over: Any) -> Path:
    """A 2-stage Swin (embed 16, patch 4, window 4, 32x32 images)."""
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    config = SwinConfig(**{"image_size": 32, "patch_size": 4, "embed_dim": 16,
                           "depths": [1, 1], "num_heads": [2, 2], "window_size": 4,
                           **_labels(), **over})
    return _save(SwinForImageClassification(config), folder, preprocessor, VIT_PREPROCESSOR)


def tiny_convnext(folder: Path, *, preprocessor: dict[str, Any] | None = None,
                  **over: Any) -> Path:
    """A 2-stage ConvNeXt (8 and 16 channels), ``shortest_edge`` 32 with ``crop_pct``."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    torch.manual_seed(0)
    config = ConvNextConfig(**{"num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1],
                               "image_size": 32,
                               **_labels(), **over})
    return _save(ConvNextForImageClassification(config), folder, preprocessor,
                 CONVNEXT_PREPROCESSOR)


def tiny_resnet(folder: Path, *, preprocessor: dict[str, Any] | None = None,
                **over: Any) -> Path:
    """A 2-stage ResNet (embed 8, stages 8 and 16, basic blocks)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(**{"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
                             "layer_type": "basic", **_labels(), **over})
    return _save(ResNetForImageClassification(config), folder, preprocessor,
                 CONVNEXT_PREPROCESSOR)


def tiny_bert(folder: Path) -> Path:
    """A tiny text classifier (``BertForSequenceClassification``): not an image classifier."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, **_labels(2))
    return _save(BertForSequenceClassification(config), folder, {}, {})


BUILDERS = {"vit": tiny_vit, "deit": tiny_deit, "swin": tiny_swin, "convnext": tiny_convnext,
            "resnet": tiny_resnet}
"""The image-classifier builders by model type."""
