"""Saliency speed, measured against references in the same run (prints ratios, asserts nothing).

1. Grad-CAM, Grad-CAM++ and XGrad-CAM (the shared CAM base: one forward + one backward per
   batch) against a plain forward + backward of the same batch (the explained logits summed,
   backward to the input and parameters as any training step would). Goal: <= 1.3x.
2. Our LIME (grid segments, batched perturbation and prediction) against the ``lime`` package's
   ``LimeImageExplainer.explain_instance`` called image by image with its defaults (quickshift,
   1000 samples, batch_size 10, top_labels 5): ours at 1000 samples and at the saliency check's
   default sample count, with the faithfulness (deletion/insertion gain over a random order) of
   the maps each produces, so speed is compared at known quality.

Run: ``python bench/bench_saliency.py [--images 8] [--batch 256] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # the lime package's per-image progress bars

import numpy as np
import torch

from audit.datasets import load_dataset
from audit.loading import load_model
from audit.saliency.gradcam import GradCAM, GradCAMPlusPlus, XGradCAM
from audit.saliency.layers import find_target_layer
from audit.saliency.lime import LimeImage, grid_segments, predict_proba
from audit.saliency.metrics import faithfulness, random_maps
from audit.saliency.settings import SaliencyParams


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_cam(model_name: str, dataset: str, batch: int, repeats: int) -> None:
    model = load_model(model_name).model
    data = load_dataset(dataset, "test")
    x = data.x[:batch]
    with torch.no_grad():
        target = model(x).argmax(1)
    layer = find_target_layer(model, x[:1])
    assert layer is not None

    def plain() -> None:
        xi = x.clone().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        model(xi).gather(1, target[:, None]).sum().backward()

    def input_only() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xi).gather(1, target[:, None]).sum(), xi)

    ref = timed(plain, repeats)
    ref_in = timed(input_only, repeats)
    for cls in (GradCAM, GradCAMPlusPlus, XGradCAM):
        cam = cls(model, layer.module, batch_size=batch)
        t = timed(functools.partial(cam.explain, x, target), repeats)
        print(f"{model_name:11s} {cls.title:11s} batch {batch}: {t * 1e3:6.1f} ms; forward+"
              f"backward {ref * 1e3:6.1f} ms -> ratio {t / ref:.2f}x (goal <= 1.3x); "
              f"forward+backward to the input only {ref_in * 1e3:6.1f} ms -> {t / ref_in:.2f}x")


def bench_lime(model_name: str, dataset: str, images: int) -> None:
    from lime import lime_image

    model = load_model(model_name).model
    data = load_dataset(dataset, "test")
    x = data.x[:images]
    grey = x.shape[1] == 1
    with torch.no_grad():
        target = model(x).argmax(1)

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        arr = batch[..., :1] if grey else batch  # lime turns grey images into RGB
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float()
        with torch.no_grad():
            return torch.softmax(model(t), 1).numpy()

    explainer = lime_image.LimeImageExplainer(random_state=0)
    grid = grid_segments(*x.shape[-2:]).numpy()

    def run_lime(segmentation_fn: Callable[[np.ndarray], np.ndarray] | None
                 ) -> tuple[float, torch.Tensor, list[int]]:
        maps = torch.zeros(len(x), *x.shape[-2:])
        counts = []
        start = time.perf_counter()
        for i, img in enumerate(x.permute(0, 2, 3, 1).numpy().astype(np.float64)):
            exp = explainer.explain_instance(img[..., 0] if grey else img, classifier_fn,
                                             random_seed=0, segmentation_fn=segmentation_fn)
            w = dict(exp.local_exp[int(target[i])])
            seg = torch.from_numpy(exp.segments)
            counts.append(int(seg.max()) + 1)
            maps[i] = torch.tensor([w.get(k, 0.0) for k in range(counts[-1])])[seg]
        return time.perf_counter() - start, maps.clamp(min=0), counts

    ref, ref_maps, segments = run_lime(None)
    t_grid, grid_maps, _ = run_lime(lambda img: grid)
    default = SaliencyParams().lime_samples
    base = data.x.mean(dim=(0, 2, 3), keepdim=True)[0]  # the check's fill: the data mean
    rows = [("lime package, defaults", ref, ref_maps),
            ("lime package, our grid", t_grid, grid_maps)]
    for samples in (1000, default):
        ours = LimeImage(model, samples=samples, hide=base)
        start = time.perf_counter()
        maps = ours.explain(x, target)
        rows.append((f"ours, {samples} samples", time.perf_counter() - start, maps))
    proba = lambda t: predict_proba(model, t)  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    rand = faithfulness(proba, x, target, random_maps((len(x), *x.shape[-2:]), gen), base, 16,
                        gen)
    cells = int(grid_segments(*x.shape[-2:]).max()) + 1
    print(f"LIME, {model_name}, {images} images (lime's quickshift found "
          f"{statistics.mean(segments):.1f} segments per image; our grid {cells}):")
    for name, t, maps in rows:
        f = faithfulness(proba, x, target, maps, base, 16, gen)
        print(f"  {name:23s} {t:6.2f} s  {t / len(x) * 1e3:7.1f} ms/image  speed-up "
              f"{ref / t:5.1f}x  faithfulness gain over random {f.score - rand.score:+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_cam("shapes-cnn", "shapes", args.batch, args.repeats)
    bench_cam("digits-cnn", "digits", args.batch, args.repeats)
    bench_lime("shapes-cnn", "shapes", args.images)
    bench_lime("digits-cnn", "digits", args.images)


if __name__ == "__main__":
    main()
