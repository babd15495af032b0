"""Hunt for the segmentation fault reported in issue 20 (a saliency run on a 3x64x64 ResNet-style
model ended with exit 139; the same command passed when run again).

What it does, every step bounded by a timeout and logged (one JSON line per run) to
``--log`` (default ``<workdir>/crash_hunt.jsonl``):

``setup``     builds two user models the way a user would: a ResNet-style CNN (BasicBlock
              residual stages of width 16/32/64, BatchNorm, random seeded weights) at 3x64x64
              and 3x224x224, saved as ``model.safetensors`` + ``card.json`` (input range [0, 1],
              10 classes, arch ``crash_resnet:ResNetSmall`` in a module beside the weights),
              plus a shapes-like ``.npz`` (textured background, one bright shape, object masks).
``cli``       runs ``python -X faulthandler -m audit run MODEL --checks saliency --data X.npz``
              repeatedly under thread settings (OMP_NUM_THREADS 1, 2, unset), LIME settings
              (grid, SLIC), instruction sets (native; AVX2 forced in ATen, oneDNN, MKL and
              OpenBLAS, as on the reporting machine) and progress on/off, recording each exit
              code and, for a negative one or 139, the faulthandler stack from stderr.
``suspects``  runs each usual suspect in a loop in a fresh ``-X faulthandler`` child process:
              scikit-image segmentation (slic, quickshift, felzenszwalb) on 64 and 224 px images,
              ``lime``'s ridge surrogate (scikit-learn) interleaved with torch conv forward and
              backward under 2 threads, captum's IG/NoiseTunnel, matplotlib Agg rendering, the
              ``lime`` package's own ``LimeImageExplainer`` (quickshift), and ``fork`` after
              torch and scikit-learn have both started their OpenMP pools.
``openmp``    prints the native thread-pool libraries loaded with torch, numpy, scipy and
              scikit-learn (``threadpoolctl``): two copies of libgomp or a libgomp + libiomp mix
              is the classic cause of intermittent OpenMP crashes.
``primitives`` counts the oneDNN primitives one quick saliency run executes with AVX2 forced
              (``ONEDNN_VERBOSE``): which native convolution kernels the check reaches.
``overhead``  times one check in-process and isolated (``audit.isolation``), alternating in one
              process, and compares the section JSON.

A run that exceeds its timeout gets SIGABRT first, so faulthandler shows where it was (hang or
just slow). Crashing runs keep their faulthandler report in the log. ``cli`` forces the
in-process path (``AUDIT_ISOLATE=none``) so a crash can happen at all, records
``PYTHONHASHSEED`` (to replay one) and whether the JSON result was written before the exit
(a crash at interpreter exit would leave it written).

Run: ``python bench/crash_hunt.py all --workdir /tmp/crash_hunt`` (about 1-2 hours on 2 busy
cores), or one step, e.g. ``python bench/crash_hunt.py cli --runs64 8 --isa native,avx2``.
It prints a summary table: runs, exit codes, crashes, and the first crash stack if any.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ISOLATE_ENV_NAME = "AUDIT_ISOLATE"

ARCH_SOURCE = '''\
"""A ResNet-style CNN (BasicBlock residual stages, BatchNorm), as a user would write one."""
import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    def __init__(self, classes: int = 10, width: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if (b == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))
'''


def log_line(log: Path, rec: dict[str, Any]) -> None:
    with log.open("a") as f:
        f.write(json.dumps(rec) + "\n")


# --------------------------------------------------------------------------------------- setup

def setup(workdir: Path, sizes: tuple[int, ...] = (64, 224), n: int = 24) -> None:
    """Model folders ``resnet{size}/`` and data ``data{size}.npz`` under ``workdir``."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "crash_resnet.py").write_text(ARCH_SOURCE)
    sys.path.insert(0, str(workdir))
    from crash_resnet import ResNetSmall  # type: ignore[import-not-found]

    for size in sizes:
        torch.manual_seed(size)
        model = ResNetSmall().eval()
        with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    assert m.running_mean is not None and m.running_var is not None
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        folder = workdir / f"resnet{size}"
        folder.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
        card = {"name": f"resnet{size}", "arch": "crash_resnet:ResNetSmall", "arch_kwargs": {},
                "input": {"kind": "image", "shape": [3, size, size], "range": [0.0, 1.0],
                          "mean": None, "std": None},
                "classes": [f"c{i}" for i in range(10)]}
        (folder / "card.json").write_text(json.dumps(card, indent=2))
        rng = np.random.default_rng(size)
        x = rng.uniform(0, 0.5, (n, 3, size, size)).astype(np.float32)  # textured background
        masks = np.zeros((n, size, size), dtype=bool)
        yy, xx = np.mgrid[:size, :size]
        y = rng.integers(0, 10, n)
        for i in range(n):
            r = rng.integers(size // 8, size // 4)
            cy, cx = rng.integers(r, size - r, 2)
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if y[i] % 2 else (
                (abs(yy - cy) <= r) & (abs(xx - cx) <= r))
            masks[i] = m
            x[i, :, m] = rng.uniform(0.6, 1.0, 3).astype(np.float32)
        np.savez(workdir / f"data{size}.npz", x=x, y=y.astype(np.int64), masks=masks)
    (workdir / "slic.toml").write_text('[checks.saliency]\nlime_segmentation = "slic"\n')
    print(f"setup: models and data in {workdir}")


# ----------------------------------------------------------------------------------------- cli

def run_bounded(cmd: list[str], env: dict[str, str], cwd: Path | None, timeout: float
                ) -> tuple[int | str, str]:
    """Run ``cmd`` in its own process group; on timeout send the group SIGABRT first, so
    faulthandler prints where it was (a hang and a slow run look different), then SIGKILL (a
    forked grandchild that hangs would otherwise keep the stderr pipe open). Returns (exit
    status or "timeout", stderr)."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGABRT)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # what is left of the group (hung grandchildren)
        return "timeout", err


def _crash_text(stderr: str) -> str:
    """The faulthandler part of stderr (from 'Fatal Python error' on), shortened."""
    i = stderr.find("Fatal Python error")
    return stderr[i:][:6000] if i >= 0 else stderr[-3000:]


ISA_ENV: dict[str, dict[str, str]] = {
    "native": {},
    # what the reporting machine had (AVX2, no AVX-512), forced in every native library
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
}


def run_cli(workdir: Path, log: Path, size: int, runs: int, quick: bool, samples: int | None,
            threads: list[str], configs: list[str], timeout: float,
            isas: tuple[str, ...] = ("native",)) -> list[dict[str, Any]]:
    """``audit run resnet{size} --checks saliency`` ``runs`` times per (isa, threads, config)."""
    out: list[dict[str, Any]] = []
    for cfg, isa in [(c, i) for i in isas for c in configs]:
        toml = workdir / f"run{size}_{cfg}.toml"
        lines = ["[checks.saliency]"]
        if cfg == "slic":
            lines.append('lime_segmentation = "slic"')
        if samples:
            lines += [f"samples = {samples}", f"sanity_samples = {min(samples, 4)}",
                      "gallery = 2", "shortcut_samples = 24"]
        if size > 64:  # every code path still runs, on less work: ~10 min at 224 px
            lines += ["featvis_classes = 3", "lime_samples = 100"]
        toml.write_text("\n".join(lines) + "\n")
        for th in threads:
            for i in range(runs):
                env = {**os.environ, "PYTHONFAULTHANDLER": "1", "TQDM_DISABLE": "1",
                       "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}"}
                env.pop("OMP_NUM_THREADS", None)
                env[ISOLATE_ENV_NAME] = "none"  # in-process: the crash must be able to happen
                env.update(ISA_ENV[isa])
                # recorded, so a crash can be replayed with the same set and dict orders
                env["PYTHONHASHSEED"] = str(size * 1000 + i)
                if th != "unset":
                    env["OMP_NUM_THREADS"] = th
                cmd = [PY, "-X", "faulthandler", "-m", "audit", "run", str(workdir /
                       f"resnet{size}"), "--checks", "saliency", "--data",
                       str(workdir / f"data{size}.npz"), "--config", str(toml), "--seed",
                       str(i), "--out", str(workdir / f"out{size}.html")]
                # the reporter's command had the default progress bar (rich's refresh thread)
                cmd.append("--progress" if i % 2 else "--no-progress")
                if quick:
                    cmd.append("--quick")
                result_json = workdir / f"out{size}.json"
                result_json.unlink(missing_ok=True)
                t = time.perf_counter()
                rc, err = run_bounded(cmd, env, workdir, timeout * (4 if size > 64 else 1))
                rec: dict[str, Any] = {"step": "cli", "size": size, "config": cfg, "isa": isa,
                                       "threads": th, "seed": i, "quick": quick, "rc": rc,
                                       "progress": bool(i % 2),
                                       "hashseed": env["PYTHONHASHSEED"],
                                       "seconds": round(time.perf_counter() - t, 1),
                                       # a crash after the report was written: at exit
                                       "result_written": result_json.exists()}
                if rc not in (0, 1):
                    rec["stderr"] = _crash_text(err)
                log_line(log, rec)
                out.append(rec)
                print(f"cli size={size} isa={isa} cfg={cfg} threads={th} seed={i}: rc={rc} "
                      f"({rec['seconds']} s)", flush=True)
    return out


# ------------------------------------------------------------------------------------ suspects

SUSPECTS: dict[str, str] = {
    # scikit-image segmentations (Cython, OpenMP-free) on 64 and 224 px images
    "skimage_segmentation": """
        import numpy as np
        from skimage.segmentation import slic, quickshift, felzenszwalb
        rng = np.random.default_rng(0)
        for it in range(ITER):
            for size in (64, 224):
                img = rng.uniform(0, 1, (size, size, 3))
                slic(img, n_segments=64, compactness=10.0, start_label=0, channel_axis=-1)
                if size == 64 or it % 4 == 0:
                    quickshift(img, kernel_size=4, max_dist=200, ratio=0.2)
                felzenszwalb(img, scale=100)
    """,
    # lime's ridge surrogate (scikit-learn, OpenBLAS) interleaved with torch conv (OpenMP)
    "torch_and_sklearn": """
        import numpy as np, torch
        from lime.lime_base import LimeBase
        from sklearn.metrics import pairwise_distances
        sys.path.insert(0, WORKDIR)
        from crash_resnet import ResNetSmall
        torch.set_num_threads(THREADS)
        m = ResNetSmall().eval()
        base = LimeBase(lambda d: np.sqrt(np.exp(-(d ** 2) / 0.0625)),
                        random_state=np.random.RandomState(0))
        rng = np.random.default_rng(0)
        for it in range(ITER):
            x = torch.rand(16, 3, 64, 64, requires_grad=True)
            m(x).sum().backward()
            with torch.no_grad():
                p = torch.softmax(m(torch.rand(64, 3, 64, 64)), 1).numpy().astype(np.float64)
            z = rng.integers(0, 2, (64, 64)); z[0] = 1
            d = pairwise_distances(z, z[:1], metric="cosine").ravel()
            base.explain_instance_with_data(z, p, d, 0, 64, feature_selection="none")
    """,
    # captum's gradient methods on the ResNet
    "captum": """
        import torch
        from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
        sys.path.insert(0, WORKDIR)
        from crash_resnet import ResNetSmall
        torch.set_num_threads(THREADS)
        m = ResNetSmall().eval()
        for it in range(ITER):
            x = torch.rand(8, 3, 64, 64)
            IntegratedGradients(m).attribute(x, target=0, n_steps=16, internal_batch_size=64)
            NoiseTunnel(Saliency(m)).attribute(x, target=0, nt_type="smoothgrad", nt_samples=8,
                                               stdevs=0.15)
    """,
    # matplotlib Agg rendering of images and plots (PNG + SVG), as the figures do
    "matplotlib": """
        import io, numpy as np, matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        for it in range(ITER):
            fig, axes = plt.subplots(2, 4)
            for ax in axes.flat:
                ax.imshow(np.random.rand(224, 224, 3)); ax.imshow(np.random.rand(224, 224),
                                                                  alpha=0.5, cmap="jet")
            for fmt in ("png", "svg"):
                fig.savefig(io.BytesIO(), format=fmt)
            plt.close(fig)
    """,
    # the lime package's own image explainer (quickshift segmentation, Ridge) on 64 and 224 px
    "lime_image_package": """
        import numpy as np, torch
        from lime.lime_image import LimeImageExplainer
        sys.path.insert(0, WORKDIR)
        from crash_resnet import ResNetSmall
        torch.set_num_threads(THREADS)
        m = ResNetSmall().eval()
        def predict(imgs):
            with torch.no_grad():
                x = torch.from_numpy(np.asarray(imgs, np.float32)).permute(0, 3, 1, 2)
                return torch.softmax(m(x), 1).numpy()
        ex = LimeImageExplainer(random_state=0)
        rng = np.random.default_rng(0)
        for it in range(ITER):
            size = 224 if it % 5 == 4 else 64
            ex.explain_instance(rng.uniform(0, 1, (size, size, 3)), predict, top_labels=2,
                                num_samples=100, batch_size=50)
    """,
    # fork after torch's and scikit-learn's OpenMP pools have started (libgomp is not fork-safe)
    "fork_after_openmp": """
        import numpy as np, torch
        from sklearn.linear_model import Ridge
        torch.set_num_threads(THREADS)
        a = torch.rand(256, 256)
        for it in range(ITER):
            (a @ a).sum()
            torch.nn.functional.conv2d(torch.rand(4, 3, 64, 64), torch.rand(8, 3, 3, 3))
            Ridge().fit(np.random.rand(200, 50), np.random.rand(200))
            pid = os.fork()
            if pid == 0:
                try:
                    torch.nn.functional.conv2d(torch.rand(4, 3, 64, 64), torch.rand(8, 3, 3, 3))
                    Ridge().fit(np.random.rand(200, 50), np.random.rand(200))
                    os._exit(0)
                except BaseException:
                    os._exit(3)
            import time
            deadline = time.monotonic() + 60
            done, status = os.waitpid(pid, os.WNOHANG)
            while done == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
                done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:  # the forked child hangs (libgomp is not fork-safe): say so, exit 7
                os.kill(pid, 9); os.waitpid(pid, 0)
                print(f"forked child hung in iteration {it}", flush=True); sys.exit(7)
            if status != 0:
                print("child status", status, flush=True); sys.exit(5)
    """,
    # the audit's own saliency pipeline in-process, many times, threads as given
    "saliency_check_inprocess": """
        import torch
        torch.set_num_threads(THREADS)
        sys.path.insert(0, WORKDIR)
        from audit.runner import run_audit
        from audit.loading import load_model
        loaded = load_model(WORKDIR + "/resnet64")
        for it in range(ITER):
            run_audit(loaded, data=WORKDIR + "/data64.npz", checks=["saliency"], seed=it,
                      quick=True, isolate=False,
                      params={"saliency": {"samples": 4, "sanity_samples": 2, "gallery": 1,
                      "shortcut_samples": 24, "featvis": it % 2 == 0,
                      "lime_segmentation": "slic" if it % 2 else "grid"}})
    """,
}


def run_suspects(workdir: Path, log: Path, names: list[str], repeats: int, iters: int,
                 threads: list[int], timeout: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in names:
        body = textwrap.dedent(SUSPECTS[name])
        for th in threads:
            for r in range(repeats):
                code = (f"import os, sys\nWORKDIR = {str(workdir)!r}\nITER = {iters}\n"
                        f"THREADS = {th}\n" + body)
                env = {**os.environ, "PYTHONFAULTHANDLER": "1", "TQDM_DISABLE": "1",
                       "OMP_NUM_THREADS": str(th), "PYTHONPATH": str(ROOT)}
                t = time.perf_counter()
                rc, err = run_bounded([PY, "-X", "faulthandler", "-c", code], env, None,
                                      timeout)
                rec: dict[str, Any] = {"step": "suspect", "name": name, "threads": th,
                                       "repeat": r, "iters": iters, "rc": rc,
                                       "seconds": round(time.perf_counter() - t, 1)}
                if rc != 0:
                    rec["stderr"] = _crash_text(err)
                log_line(log, rec)
                out.append(rec)
                print(f"suspect {name} threads={th} repeat={r}: rc={rc} ({rec['seconds']} s)",
                      flush=True)
    return out


# -------------------------------------------------------------------------------------- openmp

OPENMP_PROBE = """
import json, sys
import threadpoolctl
order = sys.argv[1].split(",")
for mod in order:
    __import__(mod)
if "sklearn" in order:
    import sklearn.linear_model, sklearn.metrics, sklearn.ensemble  # loads the vendored libgomp
    import lime.lime_base
print(json.dumps([{k: i.get(k) for k in ("user_api", "internal_api", "prefix", "filepath",
                                        "version", "num_threads")}
                  for i in threadpoolctl.threadpool_info()]))
"""


def openmp_info(log: Path) -> list[dict[str, Any]]:
    """Native thread pools loaded, for two import orders (torch first, sklearn first)."""
    out = []
    for order in ("torch,numpy,scipy,sklearn", "sklearn,numpy,scipy,torch"):
        p = subprocess.run([PY, "-c", OPENMP_PROBE, order], capture_output=True, text=True,
                           timeout=120)
        libs = json.loads(p.stdout) if p.returncode == 0 else p.stderr[-500:]
        rec = {"step": "openmp", "import_order": order, "libraries": libs}
        log_line(log, rec)
        out.append(rec)
        print(f"openmp import order {order}:")
        for lib in libs if isinstance(libs, list) else []:
            print(f"  {lib['internal_api']:9s} {lib['prefix']:18s} {lib['filepath']}")
    return out


# ---------------------------------------------------------------------------------- primitives

def onednn_primitives(workdir: Path, log: Path, isa: str, timeout: float) -> None:
    """The oneDNN primitives one quick saliency run executes (ONEDNN_VERBOSE), counted by kind:
    shows which native kernels the check reaches on the given ISA (e.g. whether any
    convolution ``backward_weights`` runs: it does not, gradients are taken w.r.t. inputs)."""
    toml = workdir / "primitives.toml"
    toml.write_text("[checks.saliency]\nsamples = 4\nsanity_samples = 4\ngallery = 2\n"
                    "shortcut_samples = 24\n")
    env = {**os.environ, **ISA_ENV[isa], "ONEDNN_VERBOSE": "1", ISOLATE_ENV_NAME: "none",
           "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}"}
    p = subprocess.run([PY, "-m", "audit", "run", str(workdir / "resnet64"), "--checks",
                        "saliency", "--data", str(workdir / "data64.npz"), "--config",
                        str(toml), "--quick", "--no-progress", "--out",
                        str(workdir / "primitives.html")], cwd=workdir, env=env,
                       capture_output=True, text=True, timeout=timeout)
    kinds: collections.Counter[str] = collections.Counter()
    for line in p.stdout.splitlines() + p.stderr.splitlines():
        parts = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in parts[:4] and len(parts) > 7:
            i = parts.index("exec")
            kinds[",".join(parts[i + 2:i + 5])] += 1
    rec = {"step": "primitives", "isa": isa, "rc": p.returncode, "kinds": dict(kinds)}
    log_line(log, rec)
    print(f"oneDNN primitives of one quick saliency run ({isa}), rc={p.returncode}:")
    for k, v in kinds.most_common():
        print(f"  {v:7d}  {k}")


# ------------------------------------------------------------------------------------ overhead

OVERHEAD_PROBE = """
import copy, json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
from audit.loading import load_model
from audit.runner import run_audit
model, data, check, repeats = sys.argv[1], sys.argv[2] or None, sys.argv[4], int(sys.argv[5])
params = json.loads(sys.argv[6])
loaded = load_model(model)
def section(isolate):
    t = time.perf_counter()
    res = run_audit(loaded, data=data, checks=[check], seed=0, quick=True, params=params,
                    isolate=isolate)
    d = copy.deepcopy(res.sections[0].to_dict())
    d.pop("duration_s")
    return time.perf_counter() - t, d
out = {"own": [], "isolated": [], "same_json": True}
ref = None
for _ in range(repeats):
    for mode in ("own", "isolated"):
        sec, d = section(mode == "isolated")
        out[mode].append(round(sec, 2))
        ref = d if ref is None else ref
        out["same_json"] &= d == ref
print(json.dumps(out))
"""


def overhead(workdir: Path, log: Path, repeats: int, threads: int) -> None:
    """Wall time of one check in-process vs isolated (same process, alternating), and whether
    the section JSON is identical."""
    cases = [("digits-cnn", "", "performance", {}),
             ("digits-cnn", "", "saliency", {}),
             (str(workdir / "resnet64"), str(workdir / "data64.npz"), "saliency",
              {"saliency": {"samples": 4, "sanity_samples": 4, "gallery": 2,
                            "shortcut_samples": 24}})]
    env = {**os.environ, "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}",
           "AUDIT_MODELS_DIR": str(ROOT / "models")}
    env.pop(ISOLATE_ENV_NAME, None)
    for model, data, check, params in cases:
        p = subprocess.run([PY, "-c", OVERHEAD_PROBE, model, data, str(threads), check,
                            str(repeats), json.dumps(params)], env=env, capture_output=True,
                           text=True, timeout=1800)
        rec: dict[str, Any] = {"step": "overhead", "model": Path(model).name, "check": check,
                               "threads": threads, "rc": p.returncode}
        if p.returncode == 0:
            rec.update(json.loads(p.stdout.strip().splitlines()[-1]))
            own, iso = statistics.median(rec["own"]), statistics.median(rec["isolated"])
            rec["median_own_s"], rec["median_isolated_s"] = own, iso
            rec["overhead_s"] = round(iso - own, 2)
            print(f"overhead {rec['model']} {check}: in-process {own:.1f} s, isolated "
                  f"{iso:.1f} s (+{iso - own:.1f} s, x{iso / own:.2f}); same JSON: "
                  f"{rec['same_json']}", flush=True)
        else:
            rec["stderr"] = p.stderr[-3000:]
            print(f"overhead {rec['model']} {check}: rc={p.returncode}\n{p.stderr[-2000:]}")
        log_line(log, rec)


# ------------------------------------------------------------------------------------- summary

def summarize(log: Path) -> None:
    recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, ...], collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    crashes = []
    for r in recs:
        if r["step"] in ("openmp", "overhead", "primitives"):
            continue
        key: tuple[str, ...] = (("cli", f"{r['size']}px", r.get("isa", "native"), r["config"],
                f"OMP={r['threads']}",
                "quick" if r["quick"] else "full") if r["step"] == "cli"
               else ("suspect", r["name"], f"threads={r['threads']}"))
        groups[key][str(r["rc"])] += 1
        if r["rc"] not in (0, 1):
            crashes.append(r)
    print("\nruns by group (exit code: count)")
    for key, counts in groups.items():
        print(f"  {' '.join(key):55s} {dict(counts)}")
    total = sum(sum(c.values()) for c in groups.values())
    print(f"total runs {total}, abnormal exits {len(crashes)}")
    for r in crashes[:3]:
        head = {k: v for k, v in r.items() if k != "stderr"}
        stack = "\n".join(line for line in r.get("stderr", "").splitlines()
                          if not line.startswith("Extension modules"))
        print(f"\n--- {head} ---\n{stack[:1500]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["setup", "cli", "suspects", "openmp", "primitives",
                                     "overhead",
                                     "summary", "all"])
    ap.add_argument("--overhead-repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/crash_hunt"))
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--runs64", type=int, default=30)
    ap.add_argument("--runs224", type=int, default=3)
    ap.add_argument("--samples64", type=int, default=4, help="saliency samples at 64 px")
    ap.add_argument("--full64", action="store_true", help="64 px runs without --quick")
    ap.add_argument("--threads", default="1,2,unset")
    ap.add_argument("--configs", default="grid,slic")
    ap.add_argument("--isa", default="native", help="native and/or avx2 (forced, comma list)")
    ap.add_argument("--suspects", default=",".join(SUSPECTS))
    ap.add_argument("--suspect-repeats", type=int, default=2)
    ap.add_argument("--suspect-iters", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    log = a.log or a.workdir / "crash_hunt.jsonl"
    a.workdir.mkdir(parents=True, exist_ok=True)
    threads = a.threads.split(",")
    if a.step in ("setup", "all") or not (a.workdir / "resnet64").exists():
        setup(a.workdir)
    if a.step in ("openmp", "all"):
        openmp_info(log)
    if a.step in ("primitives", "all"):
        onednn_primitives(a.workdir, log, "avx2", a.timeout)
    if a.step in ("cli", "all"):
        isas = tuple(a.isa.split(","))
        n64 = max(1, a.runs64 // (len(threads) * len(a.configs.split(",")) * len(isas)))
        run_cli(a.workdir, log, 64, n64, not a.full64, a.samples64, threads, a.configs.split(","),
                a.timeout, isas)
        if a.runs224:
            run_cli(a.workdir, log, 224, a.runs224, True, 2, ["unset"], ["grid"], a.timeout,
                    isas)
    if a.step in ("suspects", "all"):
        nums = [int(t) for t in threads if t != "unset"] or [2]
        run_suspects(a.workdir, log, a.suspects.split(","), a.suspect_repeats,
                     a.suspect_iters, nums, a.timeout)
    if a.step in ("overhead", "all"):
        overhead(a.workdir, log, a.overhead_repeats, 1)
    if log.exists():
        summarize(log)


if __name__ == "__main__":
    main()
