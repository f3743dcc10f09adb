"""Training the CNN ensemble on arrays (paper Sect. 3.2 and 4): each run by `run.train_run`, or all runs
together as one fused network by `fused_train.train_fused`.

`fit_runs(flux, labels, ...)` trains `runs` networks that differ only in their seed (weight
initialisation, batch order, dropout) on one fixed random train/test split and keeps the `keep`
with the lowest test loss; `Ensemble.fit` wraps it, and the `train` stage reads SETS.h5 into it.
Two steps the paper does not have are on in both presets (see `config.TrainConfig`): fresh noise on
every mini-batch (`NoiseAugment`) and a ridge refit of the output layer after early stopping
(`refit_output_layer`).

With a checkpoint directory every epoch of every run is checkpointed atomically to
`run<i>.safetensors` (weights, best weights, Adam state, RNG states, history). Calling again
after an interruption continues from there and gives the same models as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..grid import Grid
from ..io.atomic import write_json
from ..labels import LabelSet
from .config import NetworkConfig, Preset, TrainConfig
from .run import NoiseAugment, RunResult, TrainingData, train_run

log = logging.getLogger(__name__)


def pick_device(device=None) -> torch.device:
    """The given device, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_seed(seed: int, run: int) -> int:
    return int(np.random.SeedSequence([seed, run]).generate_state(1)[0])


# ----------------------------------------------------------------------------- split


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random train/test split (the same for every run of the ensemble)."""
    perm = np.random.default_rng([seed, 2023]).permutation(n)
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"{n} training spectra cannot be split {1 - test_fraction:.0%}/{test_fraction:.0%}")
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def range_check(names, y_train, y_test) -> dict[str, int]:
    """How many test stars lie outside the training range, per label (missing labels, NaN, are not counted)."""
    lo, hi = np.nanmin(y_train, 0), np.nanmax(y_train, 0)
    return {n: int(((y_test[:, j] < lo[j]) | (y_test[:, j] > hi[j])).sum()) for j, n in enumerate(names)}



# ----------------------------------------------------------------------------- ensemble


@dataclass
class TrainingRecord:
    """How an ensemble was trained: everything its bundle records besides the weights."""

    preset: Preset
    seed: int
    labels: LabelSet
    grid: Grid
    network: NetworkConfig
    results: list[RunResult]
    kept: list[int]
    train_idx: np.ndarray  # rows of the arrays given to fit
    test_idx: np.ndarray
    ids: np.ndarray  # one identifier (CNAME) per row
    data_sha256: str
    outside: dict[str, int]  # test stars outside the training label range, per label
    device: str


def data_hash(names, ids, y, flux) -> str:
    """sha256 of the training data: a resumed or reused checkpoint must have seen exactly this."""
    h = hashlib.sha256()
    h.update(json.dumps([list(names), np.asarray(ids).astype(str).tolist()]).encode())
    h.update(np.ascontiguousarray(y, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(flux, dtype="<f4").tobytes())
    return h.hexdigest()


def _check_settings(path: Path, settings: dict, where) -> None:
    """Refuse to resume a training made with other data or settings, naming each difference."""
    if not path.exists():
        write_json(path, settings, indent=1)
        return
    old = json.loads(path.read_text())
    # settings added since that training started take their defaults (the old behaviour)
    old["train"] = {**TrainConfig().to_dict(), **old.get("train", {})}
    new = json.loads(json.dumps(settings))
    if old != new:
        diff = []
        for k in sorted(new):
            if isinstance(new[k], dict) and isinstance(old.get(k), dict):
                diff += [f"{k}.{f} ({old[k].get(f)} there, {new[k].get(f)} now)"
                         for f in sorted(new[k].keys() | old[k].keys()) if old[k].get(f) != new[k].get(f)]
            elif old.get(k) != new[k]:
                diff.append(k if k == "data_sha256" else f"{k} ({old.get(k)} there, {new[k]} now)")
        raise ValueError(f"{where} holds a training with different {', '.join(diff)}; resume with the "
                         "same settings, or use another --out (or delete that directory) to start afresh")
    log.info("resuming the training in %s", where)


def data_to(data: TrainingData, device: torch.device) -> TrainingData:
    """The same training data on another device (a Dask worker's own CPU or GPU)."""
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    noise = data.noise
    if noise is not None:
        noise = NoiseAugment.__new__(NoiseAugment)
        noise.__dict__.update(data.noise.__dict__, sigma=data.noise.sigma.to(device))
    return TrainingData(move(data.x_train), move(data.y_train), move(data.x_test), move(data.y_test),
                        move(data.w_train), move(data.w_test), noise)


def _run_task(index: int, seed: int, net_cfg: NetworkConfig, cfg: TrainConfig, data: TrainingData, ckpt_path,
              device, threads) -> RunResult:
    """One Dask task: one training run on a worker, on `device` (default: CUDA when the worker has
    one) with `scheduler.worker_threads` torch threads; its checkpoint goes to `ckpt_path` as in one
    process. The weights come back on the CPU."""
    from ..cores import configure_threads
    from ..scheduler import worker_threads

    configure_threads(worker_threads(threads))
    dev = pick_device(device)
    r = train_run(index, seed, net_cfg, cfg, data_to(data, dev), None if ckpt_path is None else Path(ckpt_path),
                  dev, None, False)
    return RunResult(r.state, {k: v.cpu() for k, v in r.best.items()}, {k: v.cpu() for k, v in r.snapshots.items()})


def _runs_on_cluster(client, seeds, net_cfg, cfg, data, ckpt_dir, device, threads, callback, progress):
    """Every run as one Dask task (the data sent to each worker once); results in run order."""
    from tqdm.auto import tqdm

    from ..scheduler import map_chunks

    shared = client.scatter(data, broadcast=True, hash=False)
    tasks = [(i, s, net_cfg, cfg, shared, None if ckpt_dir is None else str(ckpt_dir.resolve() / f"run{i}.safetensors"),
              device, threads) for i, s in seeds]
    results = []
    with tqdm(total=len(tasks), desc="runs", unit="run", disable=not progress) as bar:
        for r in map_chunks(client, _run_task, tasks):
            results.append(r)
            bar.update(1)
            if callback is not None:
                callback(r.state.index, r.state.epoch, r.state.to_json())
    return results


def fit_runs(flux: np.ndarray, y: np.ndarray, names, grid: Grid, p: Preset, seed: int = 0, ids=None,
             weights: np.ndarray | None = None, checkpoint_dir=None, callback=None, device=None,
             progress: bool = True, fused: bool = False, client=None, threads: int | None = None) -> TrainingRecord:
    """Train `p.runs` networks that differ only in their seed on one fixed random split of (flux, y)
    and keep the `p.keep` with the lowest test loss. With `checkpoint_dir` every epoch is
    checkpointed there and a second call resumes (other data or settings are refused). `fused`: all
    runs advance together as one fused network (`fused_train.py`; needs `checkpoint_dir`).
    `client` (a dask.distributed Client): each run is one task on the cluster, on the worker's own
    device with `threads` torch threads (default `scheduler.worker_threads`), retried when it fails
    (resuming from its checkpoint); the same networks as in one process with as many threads per run.
    The checkpoints must be on a file system the workers share; `callback` is then called once per
    finished run, here."""
    if client is not None and fused:
        raise ValueError("fused training and a Dask scheduler do not go together yet: one or the other")
    names = tuple(names)
    flux = np.asarray(flux, dtype=np.float32)
    y = np.asarray(y, dtype=float)  # NaN: a missing label, left out of the loss
    if flux.ndim != 2 or y.shape != (len(flux), len(names)):
        raise ValueError(f"flux {flux.shape} and labels {y.shape} do not fit: expected (N, pixels) and "
                         f"(N, {len(names)}) for the labels {list(names)}")
    if flux.shape[1] != grid.n_pixels:
        raise ValueError(f"flux has {flux.shape[1]} pixels but the grid {grid.names} has {grid.n_pixels}")
    ids = np.asarray([f"{i}" for i in range(len(y))] if ids is None else ids).astype(str)
    asked_device, device = device, pick_device(device)
    net_cfg = replace(p.network, n_pixels=flux.shape[1], n_labels=len(names))
    cfg = p.train
    tr, te = split_indices(len(y), cfg.test_fraction, seed)
    outside = range_check(names, y[tr], y[te])
    log.info("%d training / %d test spectra (test fraction %g, seed %d)", len(tr), len(te), cfg.test_fraction, seed)
    if any(outside.values()):
        log.info("test stars outside the training label range: %s",
                 ", ".join(f"{k} {v}" for k, v in outside.items() if v))
    else:
        log.info("all test labels lie within the training ranges")
    labelset = LabelSet.fit(names, y[tr])
    sha = data_hash(names, ids, y, flux)
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        _check_settings(ckpt_dir / "settings.json",
                        {"data_sha256": sha, "labels": list(names), "preset": p.name, "seed": seed,
                         "network": net_cfg.to_dict(), "train": cfg.to_dict()}, ckpt_dir.parent)

    build = torch.device("cpu") if client is not None else device  # on a cluster each worker moves it
    to = lambda a: torch.as_tensor(a, dtype=torch.float32).to(build)  # noqa: E731
    w = None if weights is None else np.asarray(weights, dtype=float)
    missing = ~np.isfinite(y)
    if missing.any():  # a missing label counts nothing in the loss: weight 0, value the training mean
        w = np.ones_like(y) if w is None else w.copy()
        w[missing] = 0.0
        y = np.where(missing, np.asarray(labelset.mean), y)
    data = TrainingData(to(flux[tr]), to(labelset.to_network(y[tr])), to(flux[te]), to(labelset.to_network(y[te])),
                        None if w is None else to(w[tr]), None if w is None else to(w[te]),
                        NoiseAugment(flux[tr], list(grid.slices().values()), cfg.noise_augment, build,
                                     cfg.mask_setups)
                        if cfg.noise_augment > 0 or cfg.mask_setups > 0 else None)
    if fused:
        if ckpt_dir is None:
            raise ValueError("fused training writes each member's checkpoint: give a checkpoint directory")
        from .fused_train import train_fused

        together = train_fused([(i, run_seed(seed, i)) for i in range(p.runs)], net_cfg, cfg, data, ckpt_dir,
                               device, callback, progress)
    if client is not None:
        together = _runs_on_cluster(client, [(i, run_seed(seed, i)) for i in range(p.runs)], net_cfg, cfg, data,
                                    ckpt_dir, None if asked_device is None else str(asked_device), threads, callback,
                                    progress)
    results = []
    for i in range(p.runs):
        r = together[i] if fused or client is not None else train_run(
            i, run_seed(seed, i), net_cfg, cfg, data,
            None if ckpt_dir is None else ckpt_dir / f"run{i}.safetensors", device, callback, progress)
        st = r.state
        refit = (f"; {st.best_test:.5f} after refitting the output layer" if st.test_before_refit is not None else "")
        before = st.best_test if st.test_before_refit is None else st.test_before_refit
        log.info("run %d: %d epochs, best test loss %.5f (epoch %d)%s", i, st.epoch, before, st.best_epoch, refit)
        results.append(r)
    order = sorted(range(p.runs), key=lambda i: results[i].state.best_test)
    kept = sorted(order[: p.keep])
    log.info("kept runs %s (lowest test loss); left out %s", kept, sorted(order[p.keep:]))
    return TrainingRecord(p, seed, labelset, grid, net_cfg, results, kept, tr, te, ids, sha, outside, str(device))
