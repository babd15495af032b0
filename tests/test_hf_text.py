"""Hugging Face text classifiers load offline from safetensors with their tokenizer, refuse
remote code and unasked-for pickles, and take the token methods (Integrated Gradients)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from audit.datasets.tickets import WordTokenizer, make_tickets
from audit.errors import CheckpointError, UnsafeCheckpointError
from audit.loading.hf_text import is_hf_text_folder, load_hf_text_folder
from audit.saliency.tokens import integrated_gradients, occlusion


def _tiny_bert(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = WordTokenizer.for_tickets().vocab[2:]
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                                  cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=40, num_labels=2,
                        id2label={0: "routine", 1: "urgent"},
                        label2id={"routine": 0, "urgent": 1})
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_folder_loads_and_matches_the_model(tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    folder = _tiny_bert(tmp_path / "bert")
    assert is_hf_text_folder(folder)
    clf = load_hf_text_folder(folder, max_length=32)
    assert clf.classes == ["routine", "urgent"] and clf.max_length == 32
    texts = make_tickets(8, seed=1).texts
    ids = clf.encode(texts)
    assert ids.shape == (8, 32) and (ids[:, 0] == 2).all()  # [CLS] first
    ref = BertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        want = torch.softmax(ref(input_ids=ids, attention_mask=(ids != 0).long()).logits, 1)
    assert torch.allclose(torch.from_numpy(clf.proba(texts)), want, atol=1e-6)
    target = torch.from_numpy(clf.proba(texts).argmax(1))
    ig = integrated_gradients(clf.model, clf.embedding, ids, target, steps=8)
    loo = occlusion(clf.model, ids, target)
    assert torch.isfinite(ig).all() and (ig[ids == 0] == 0).all() and (loo[ids == 0] == 0).all()


def test_remote_code_and_pickles_are_refused(tmp_path: Path) -> None:
    folder = _tiny_bert(tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {
        "AutoModelForSequenceClassification": "modeling.MyModel"}}))
    with pytest.raises(CheckpointError, match="custom code"):
        load_hf_text_folder(folder)
    from safetensors.torch import load_file

    pickled = _tiny_bert(tmp_path / "bin")  # the same weights as a pickle, no safetensors
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(UnsafeCheckpointError, match="trust-checkpoint"):
        load_hf_text_folder(pickled)


def test_not_a_text_classifier(tmp_path: Path) -> None:
    config = {"architectures": ["ViTForImageClassification"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert not is_hf_text_folder(tmp_path)
    with pytest.raises(CheckpointError, match="not a text classifier"):
        load_hf_text_folder(tmp_path)
