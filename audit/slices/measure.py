"""Measure the slices check on a subject: where its model fails (rules, clusters) and, for
tabular data, what in the training data may cause it (representation, base rates,
missingness, proxies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audit.datasets import dataset_names, load_dataset
from audit.datasets.files import load_data_file
from audit.drift.embeddings import Embedder
from audit.errors import DataError
from audit.slices.attributes import image_attributes
from audit.slices.bias import training_bias
from audit.slices.clusters import cluster_slices
from audit.slices.evaluation import GallerySlice, SlicesEvaluation
from audit.slices.params import SlicesParams
from audit.slices.proxies import find_proxies, model_reliance, with_reliance
from audit.slices.search import find_slices
from audit.subject import AuditData, Subject

__all__ = ["check_train_spec", "load_train", "measure_slices", "slice_frame"]


def slice_frame(data: AuditData) -> tuple[pd.DataFrame, str] | None:
    """The columns slices are searched on: a tabular frame's raw columns (model inputs and
    sensitive columns, not the label), or the attributes of images with masks."""
    if data.kind == "image":
        attrs = image_attributes(data)
        return None if attrs is None else (attrs, "image attributes (from the object masks)")
    frame, encoder = data.extras.get("frame"), data.extras.get("encoder")
    if frame is None:
        names = data.feature_names or [f"x{i}" for i in range(int(data.x.shape[1]))]
        return pd.DataFrame(data.x.numpy(), columns=names), "the model's input features"
    inputs = list(encoder.columns) if encoder is not None else list(data.feature_names or [])
    cols = [c for c in dict.fromkeys([*inputs, *data.extras.get("sensitive", [])])
            if c in frame.columns]
    return frame[cols].reset_index(drop=True), "raw columns"


def check_train_spec(spec: str) -> None:
    """A :class:`DataError` unless ``spec`` is an existing file or a bundled dataset name."""
    name, _, split = spec.partition(":")
    if Path(spec).exists() or (name in dataset_names() and split in ("", "train", "test")):
        return
    raise DataError(f"--train-data {spec} is neither a file nor a bundled dataset "
                    f"({', '.join(dataset_names())}, optionally :train or :test)")


def load_train(subject: Subject, p: SlicesParams) -> AuditData | None:
    """The training data: ``train_data`` (a bundled NAME[:split] or a file), else the card's
    bundled dataset's train split, else ``None``."""
    card, spec = subject.card, p.train_data
    if spec is None:
        return load_dataset(card.dataset, "train", subject.seed) \
            if card.dataset in dataset_names() else None
    name, _, split = spec.partition(":")
    if not Path(spec).exists() and name in dataset_names():
        return load_dataset(name, split or "train", subject.seed)
    return load_data_file(Path(spec), card, card.target,
                          list(subject.data.extras.get("sensitive", [])) or None)


def _galleries(ev: SlicesEvaluation, subject: Subject, failed: np.ndarray,
               p: SlicesParams) -> None:
    """Up to 3 correct and 3 failed members of each of the worst confirmed image slices, with
    Grad-CAM maps of the predicted class on the Grad-CAM layer the saliency check would use."""
    from audit.saliency.figures import display_images
    from audit.saliency.gradcam import GradCAM
    from audit.saliency.layers import find_target_layer

    data, classes = subject.data, subject.card.classes
    layer = find_target_layer(subject.model, data.x[:2].to(subject.device))
    pred = subject.data_pred
    for s, _ in ev.distinct(p.overlap, p.gallery):
        member = ev.members.get(s.rule)
        if member is None:
            continue
        bad = np.flatnonzero(member & failed)[:3].tolist()
        good = np.flatnonzero(member & ~failed)[: 6 - len(bad)].tolist()
        rows = good + bad
        x = data.x[rows]
        maps = GradCAM(subject.model, layer.module, layout=layer.layout).explain(x, pred[rows]) \
            if layer is not None else None
        ev.galleries.append(GallerySlice(
            s.rule, rows, len(good), display_images(x, subject.card.input.range), maps,
            [classes[int(i)] for i in data.y[rows]], [classes[int(i)] for i in pred[rows]]))


def _bias(ev: SlicesEvaluation, subject: Subject, p: SlicesParams, seed: int) -> None:
    data = subject.data
    sensitive = list(data.extras.get("sensitive", []))
    frame, encoder = data.extras.get("frame"), data.extras.get("encoder")
    target = subject.card.target or (encoder.target if encoder is not None else None)
    if not sensitive or frame is None or encoder is None or not target:
        ev.notes.append("No training-data bias audit: it needs tabular data with the card's "
                        "encoder, a label column and sensitive columns.")
        return
    train = load_train(subject, p)
    if train is None or train.extras.get("frame") is None:
        ev.notes.append("No training-data bias audit: no training data (pass --train-data or "
                        "[checks.slices] train_data).")
        return
    tf = train.extras["frame"]
    missing = [c for c in [*sensitive, target] if c not in tf.columns]
    if missing:
        raise DataError(f"the training data {train.source or train.name} lacks column(s) "
                        f"{', '.join(missing)}")
    bundled = not train.source or train.source.startswith("bundled:")
    ev.train = train.name if bundled else train.source
    ev.bias = training_bias(tf, frame, sensitive, target, min_group=p.min_group,
                            alpha=p.alpha)
    features = [c for c in encoder.columns if c not in sensitive]
    rows = frame.sample(min(len(frame), p.reliance_rows), random_state=seed)

    def predict(f: pd.DataFrame) -> np.ndarray:
        x = torch.from_numpy(encoder.transform(f, where="reliance"))
        return subject.logits(x).argmax(dim=1).numpy()

    reliance = model_reliance(predict, rows.reset_index(drop=True), features, seed=seed)
    for s in sensitive:
        found = find_proxies(tf, s, features, seed=seed, strong_auc=p.strong_auc)
        ev.proxies += with_reliance(found, reliance)


def measure_slices(subject: Subject, p: SlicesParams) -> SlicesEvaluation:
    """Every measurement of the slices check."""
    data = subject.data
    seed = int(subject.rng("slices").integers(2**31 - 1))
    failed = (subject.data_pred != data.y).numpy()
    ev = SlicesEvaluation(kind=data.kind, samples=len(data), errors=int(failed.sum()))
    masks: dict[str, np.ndarray] = {}
    found = slice_frame(data)
    if found is not None:
        frame, ev.search_on = found
        ev.search = find_slices(frame, failed, max_conditions=p.max_conditions,
                                min_support=p.min_support, bins=p.bins, carry=p.carry,
                                alpha=p.alpha, seed=seed)
        for s in ev.search.confirmed:
            m = np.ones(len(frame), bool)
            for c in s.conditions:
                m &= c.mask(frame)
            masks[s.rule] = m
    if data.kind == "image":
        embed = Embedder.of(subject)
        ev.embedding = embed.source
        ev.clusters, members = cluster_slices(embed(data.x).numpy(), failed, k=p.clusters,
                                              alpha=p.alpha, seed=seed)
        masks.update(members)
    ev.members = {s.rule: masks[s.rule] for s in ev.confirmed if s.rule in masks}
    if data.kind == "image":
        _galleries(ev, subject, failed, p)
    else:
        _bias(ev, subject, p, seed)
    return ev
