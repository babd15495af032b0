"""Which device an audit runs on: ``--device auto|cpu|cuda|cuda:N``.

The model moves to the device once (:func:`audit.runner.build_subject`); the audit data stays
on the CPU and moves to the device one batch at a time: that copy per batch stays (memory
bounded by the batch, not the dataset). Inside attack and explainer loops results stay on the
device and are joined there, then copied back once, after the loop (``Subject.logits``,
``run_batched``, the explainers' ``attribute``, PGD/APGD/APGD-T traces, the smoothing counts,
the corruption counts); ``tests/test_device_residency.py`` fails if a per-batch copy returns.
``--amp`` (:attr:`audit.subject.Subject.amp`) runs ``Subject.logits`` under
``torch.autocast``; gradient-based attacks, explainers and certification stay exact.

What must copy to the CPU, and why
----------------------------------
* ``audit/robustness/evaluate.py`` (``_curve_batch``, ``confirm``): which samples the next
  attack runs on, and at which epsilon, is decided in numpy from the norms found (data-driven
  control flow), so each batch's norms and success flags (N numbers, not images) are read on
  the host; ``AttackStats.add`` keeps the found norms as Python floats for the tables.
  ``audit/robustness/autoattack.py`` (``run_protocol``): the broken flags of each batch pick
  the samples the next attack runs on (and ``keep_adv`` keeps adversarials on the CPU).
* ``audit/robustness/base.py``, ``fab.py``, ``foolbox_attacks.py``: an attack's documented
  ``info["minimal_norms"]`` is a CPU vector (N floats per call). foolbox itself stays on the
  device: ``fb.PyTorchModel(..., device=x.device)`` and eagerpy wrap the torch tensors
  without copying.
* ``audit/robustness/diagnostics.py`` (``loss_surface``) and ``audit/robustness/corruptions.py``:
  noise is drawn from a seeded CPU ``torch.Generator`` (the same numbers on every device) and
  moves to the device, host to device; the corruption is applied to the CPU batch before it
  moves.
* ``audit/saliency/lime.py``: segmentation (scikit-image SLIC) and LIME's ridge surrogate
  (``lime.lime_base``, scikit-learn) run in numpy; the perturbed images' model calls are
  batched on the device and their probabilities copied once per batch of images.
* ``audit/saliency/metrics.py`` (deletion/insertion curves), ``audit/saliency/reliance.py``
  (occlusion windows): the perturbed inputs are built on the CPU from the CPU data, and each
  step is one ``Subject.logits`` call (input batches move to the device, one output copy per
  call); ``spearman_rows`` ranks in numpy (scipy).
* ``audit/saliency/base.py`` (``normalize_maps``): maps come back to the CPU once per
  explanation, for the metrics and figures.
* ``audit/certified/smoothing.py``: counts are accumulated on the device and copied once; the
  Clopper-Pearson bounds are scipy (numpy).
* scikit-learn and scipy checks need numpy: ``audit/surrogate/`` (tree and linear
  surrogates), ``audit/slices/`` (clustering of embeddings, slice search), ``audit/drift/``
  (KS and chi-square tests, the classifier test; the MMD test takes numpy arrays),
  ``audit/performance.py`` (metrics from ``Subject.data_logits``).
* Every result ends on the host: metrics, tables and figures are written to the JSON
  (``audit/result.py``) and drawn with matplotlib.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from audit.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device"]


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``spec`` names: ``auto`` (or ``None``) is the first CUDA device when
    one is present, else the CPU; ``cuda`` and ``cuda:N`` must exist. :class:`UsageError`
    (exit 4) with the devices there are, otherwise."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "auto":
        return torch.device("cuda" if count else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise UsageError(f"--device {spec!r} is not auto, cpu, cuda or cuda:N")
    index = int(m.group(1) or 0)
    if index >= count:
        there = f"{count} CUDA device(s)" if count else "no CUDA device (torch.cuda is " \
                                                       "not available)"
        raise UsageError(f"--device {spec}: this machine has {there}; use --device cpu or "
                         "auto")
    return torch.device(f"cuda:{index}")
