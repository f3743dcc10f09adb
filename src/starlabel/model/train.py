"""Train the CNN ensemble (paper Sect. 3.2 and 4): the one training loop of the package.

`train(SETS.h5, MODEL_DIR)` trains `runs` networks that differ only in their seed (weight
initialisation, batch order, dropout) on one fixed random train/test split, keeps the `keep`
with the lowest test loss and writes the model bundle (see `ensemble.py`). Two steps the paper
does not have are on in both presets (see `config.TrainConfig`): fresh noise on every mini-batch
(`NoiseAugment`) and a ridge refit of the output layer after early stopping (`refit_output_layer`).

Every epoch of every run is checkpointed atomically to `MODEL_DIR/checkpoints/run<i>.safetensors`
(weights, best weights, Adam state, RNG states, history). Running the same command again
after an interruption continues from there and gives the same models as an uninterrupted run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..cores import configure_threads
from ..io.atomic import atomic_path
from ..io.dataset import Dataset
from ..labels import DEFAULT_LABELS, LabelSet, float_column, label_matrix
from ..uncertainty import pixel_noise
from . import checkpoint
from .config import NetworkConfig, TrainConfig, preset as get_preset
from .ensemble import write_bundle
from .network import Network

log = logging.getLogger(__name__)


def pick_device(device=None) -> torch.device:
    """The given device, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_seed(seed: int, run: int) -> int:
    return int(np.random.SeedSequence([seed, run]).generate_state(1)[0])


def _write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


# ----------------------------------------------------------------------------- data


def load_training_data(sets_path, labels, echo=print):
    """Flux, labels, CNAMEs and dataset rows of SET == 'train', without non-finite rows.

    Returns (ds, flux, y, cnames, rows, n_dropped, data_sha256)."""
    ds = Dataset(sets_path)
    cat = ds.catalogue
    rows = ds.rows(SET="train") if "SET" in cat.colnames else np.arange(len(ds))
    if "SET" not in cat.colnames:
        echo(f"{ds.path.name} has no SET column: training on all {len(rows)} rows")
    if len(rows) == 0:
        raise ValueError(f"{ds.path} has no rows with SET == 'train'")
    y = label_matrix(cat[rows], labels)
    flux = ds.read(rows)
    ok_y = np.isfinite(y).all(1)
    ok_f = np.isfinite(flux).all(1)
    ok = ok_y & ok_f
    n_drop = int((~ok).sum())
    if n_drop:
        echo(f"dropped {n_drop} of {len(rows)} training rows: {int((~ok_y).sum())} with non-finite labels "
             f"{list(labels)}, {int((~ok_f).sum())} with non-finite flux")
    rows, y, flux = rows[ok], y[ok], flux[ok]
    cnames = np.asarray(cat["CNAME"][rows]).astype(str)
    h = hashlib.sha256()
    h.update(json.dumps([list(labels), cnames.tolist()]).encode())
    h.update(np.ascontiguousarray(y, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(flux, dtype="<f4").tobytes())
    return ds, flux, y, cnames, rows, n_drop, h.hexdigest()


def label_weights(table, labels, echo=print) -> np.ndarray:
    """(N, L) weights 1/E² from the E_<LABEL> columns, normalised to mean 1 per label. Labels
    without an error column, and stars with a missing or non-positive error (given the median
    weight), keep the plain mean squared error's say."""
    w = np.ones((len(table), len(labels)))
    for j, name in enumerate(labels):
        col = f"E_{name}"
        if col not in table.colnames:
            echo(f"no {col} column: {name} is not weighted")
            continue
        e = float_column(table, col)
        good = np.isfinite(e) & (e > 0)
        if not good.any():
            echo(f"{col} has no positive finite errors: {name} is not weighted")
            continue
        inv = np.where(good, 1.0 / np.where(good, e, 1.0) ** 2, np.nan)
        inv[~good] = np.median(inv[good])
        w[:, j] = inv / inv.mean()
    return w


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random train/test split (the same for every run of the ensemble)."""
    perm = np.random.default_rng([seed, 2023]).permutation(n)
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"{n} training spectra cannot be split {1 - test_fraction:.0%}/{test_fraction:.0%}")
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def range_check(names, y_train, y_test) -> dict[str, int]:
    """How many test stars lie outside the training range, per label."""
    lo, hi = y_train.min(0), y_train.max(0)
    return {n: int(((y_test[:, j] < lo[j]) | (y_test[:, j] > hi[j])).sum()) for j, n in enumerate(names)}


# ----------------------------------------------------------------------------- one run


def refit_output_layer(net: Network, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None,
                       batch: int = 512) -> list[float]:
    """Replace `net.out` by a ridge regression of `y` on the last hidden features of `x` (eval
    mode, so without dropout), one regularisation α per label chosen by leave-one-out (RidgeCV).
    `w`: per-star, per-label weights of the loss. Returns the αs."""
    from sklearn.linear_model import RidgeCV

    net.eval()
    with torch.inference_mode():
        h = torch.cat([net.hidden(x[i : i + batch]) for i in range(0, len(x), batch)]).double().cpu().numpy()
    target = y.double().cpu().numpy()
    coef, intercept, alphas = np.empty((target.shape[1], h.shape[1])), np.empty(target.shape[1]), []
    for j in range(target.shape[1]):
        r = RidgeCV(alphas=np.logspace(-4, 4, 17)).fit(h, target[:, j], None if w is None else w[:, j].cpu().numpy())
        coef[j], intercept[j] = r.coef_, r.intercept_
        alphas.append(float(r.alpha_))
    with torch.no_grad():
        net.out.weight.copy_(torch.as_tensor(coef))
        net.out.bias.copy_(torch.as_tensor(intercept))
    net.train()
    return alphas


def _predict(net: Network, x: torch.Tensor, batch: int) -> torch.Tensor:
    net.eval()
    with torch.inference_mode():
        out = torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])
    net.train()
    return out


def loss_fn(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error in network space, optionally weighted per star and label."""
    return F.mse_loss(pred, y) if w is None else (w * (pred - y) ** 2).mean()


class NoiseAugment:
    """Fresh Gaussian noise for each mini-batch: `factor` × each spectrum's own per-setup pixel
    noise (DER_SNR), drawn from the run's shuffle generator so a resumed run draws the same.
    Unlike `uncertainty.noise_sigma` it ignores the pixel mask: training spectra passed the
    quality cuts, and their few repaired pixels hold plausible flux."""

    def __init__(self, flux: np.ndarray, slices, factor: float, device: torch.device):
        self.slices = list(slices)
        self.sigma = torch.as_tensor(factor * pixel_noise(flux, self.slices), device=device)

    def __call__(self, xb: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        eps = torch.randn(xb.shape, generator=gen).to(xb.device)
        sigma = self.sigma[idx]
        for j, s in enumerate(self.slices):
            eps[:, s] *= sigma[:, j : j + 1]
        return xb + eps


def fit_epoch(net: Network, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch: int,
              shuffle: torch.Generator, w: torch.Tensor | None = None, noise: NoiseAugment | None = None) -> float:
    """One pass over (x, y) in freshly shuffled mini-batches; returns the mean training loss."""
    n = len(x)
    perm = torch.randperm(n, generator=shuffle).to(x.device)
    net.train()
    total = torch.zeros((), device=x.device)
    for i in range(0, n, batch):
        idx = perm[i : i + batch]
        xb = x[idx] if noise is None else noise(x[idx], idx, shuffle)
        loss = loss_fn(net(xb), y[idx], None if w is None else w[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(idx)
    return total.item() / n


def train_run(index: int, seed: int, net_cfg: NetworkConfig, cfg: TrainConfig, data, ckpt_path: Path,
              device: torch.device, callback=None, progress: bool = True) -> dict:
    """Train (or resume, or just report) run `index`. Returns its final checkpoint state."""
    x_tr, y_tr, x_te, y_te, w_tr, w_te, noise = data
    torch.manual_seed(seed)
    net = Network(net_cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate,
                           fused=device.type in ("cpu", "cuda"))
    shuffle = torch.Generator().manual_seed(seed)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor, patience=cfg.lr_patience,
                                                        min_lr=cfg.min_lr) if cfg.lr_factor else None)
    names = [n for n, _ in net.named_parameters()]
    st = {"index": index, "seed": seed, "epoch": 0, "best_epoch": 0, "best_test": float("inf"),
          "bad_epochs": 0, "done": False, "train_loss": [], "test_loss": [], "snapshots": []}
    best = {n: p.detach().clone() for n, p in net.named_parameters()}
    snaps: dict[str, torch.Tensor] = {}
    if ckpt_path.exists():
        tensors, saved = checkpoint.load(ckpt_path)
        if saved.get("seed") != seed:
            raise ValueError(f"{ckpt_path} belongs to a run with seed {saved.get('seed')}, not {seed}")
        st.update(saved)
        best = {n: tensors[f"best.{n}"].to(device) for n in names}
        snaps = {k[5:]: v for k, v in tensors.items() if k.startswith("snap.")}
        if st["done"]:
            return st | {"_best": best, "_snaps": snaps}
        net.load_state_dict({n: tensors[f"model.{n}"] for n in names})
        checkpoint.restore_optimizer(opt, tensors, st.pop("optim"))
        if sched is not None and "sched" in st:
            sched.load_state_dict(st["sched"])
        torch.set_rng_state(tensors["rng.torch"])
        shuffle.set_state(tensors["rng.shuffle"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"])

    def save(final: bool):
        tensors = {f"best.{n}": t for n, t in best.items()}
        tensors |= {f"snap.{k}": v for k, v in snaps.items()}
        state = {k: v for k, v in st.items() if not k.startswith("_")}
        if not final:  # everything needed to continue exactly where we are
            tensors |= {f"model.{n}": p for n, p in net.named_parameters()}
            ot, oinfo = checkpoint.optimizer_tensors(opt)
            tensors |= ot
            tensors["rng.torch"] = torch.get_rng_state()
            tensors["rng.shuffle"] = shuffle.get_state()
            if device.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state()
            state["optim"] = oinfo
        checkpoint.save(ckpt_path, tensors, state)

    bar = tqdm(total=cfg.max_epochs, initial=st["epoch"], desc=f"run {index}", unit="epoch",
               disable=not progress, leave=False)
    net.train()
    while not st["done"]:
        epoch = st["epoch"] + 1
        train_loss = fit_epoch(net, opt, x_tr, y_tr, cfg.batch_size, shuffle, w_tr, noise)
        pred = _predict(net, x_te, cfg.eval_batch_size)
        test = loss_fn(pred, y_te, w_te).item()
        st["train_loss"].append(train_loss)
        st["test_loss"].append(test)
        st["epoch"] = epoch
        if sched is not None:
            sched.step(test)
            st["sched"] = sched.state_dict()
        if epoch in cfg.snapshot_epochs:
            snaps[f"epoch_{epoch}"] = pred.cpu()
        if test < st["best_test"] - cfg.min_delta:
            st.update(best_test=test, best_epoch=epoch, bad_epochs=0)
            best = {n_: p.detach().clone() for n_, p in net.named_parameters()}
            snaps["best"] = pred.cpu()
        else:
            st["bad_epochs"] += 1
        if st["bad_epochs"] >= cfg.patience or epoch >= cfg.max_epochs or not np.isfinite(test):
            st["done"] = True
            if cfg.refit_output and np.isfinite(st["best_test"]):
                net.load_state_dict(best)
                st["refit_alpha"] = refit_output_layer(net, x_tr, y_tr, w_tr)
                best = {n_: p.detach().clone() for n_, p in net.named_parameters()}
                pred = _predict(net, x_te, cfg.eval_batch_size)
                st["test_before_refit"] = st["best_test"]
                st["best_test"] = loss_fn(pred, y_te, w_te).item()
                snaps["best"] = pred.cpu()
            st["snapshots"] = sorted({int(k[6:]) for k in snaps if k.startswith("epoch_")} | {st["best_epoch"]})
            if "best" in snaps:
                snaps[f"epoch_{st['best_epoch']}"] = snaps.pop("best")
        save(final=st["done"])
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4f}", test=f"{test:.4f}", best=f"{st['best_test']:.4f}")
        if callback is not None:
            callback(index, epoch, dict(st))
    bar.close()
    return st | {"_best": best, "_snaps": snaps}


# ----------------------------------------------------------------------------- ensemble


def train(sets_path, out_dir, labels=DEFAULT_LABELS, runs: int = 10, keep: int = 8, preset: str = "quick",
          seed: int = 0, *, device=None, threads: int | None = None, callback=None, echo=print,
          progress: bool = True, fused: bool = False, **train_overrides) -> Path:
    """Train an ensemble on the SET == 'train' rows of `sets_path` and write the bundle to `out_dir`.

    `train_overrides` change TrainConfig fields of the preset (e.g. max_epochs=5).
    `callback(run, epoch, state)` is called after each epoch's checkpoint is on disk.
    Re-running with the same arguments resumes; different data or settings are refused.
    `fused`: train all runs together as one fused network (model/fused_train.py).
    """
    labels = tuple(labels)
    if not 1 <= keep <= runs:
        raise ValueError(f"--keep must be between 1 and --runs ({runs}), got {keep}")
    p = get_preset(preset, **train_overrides)
    device = pick_device(device)
    configure_threads(threads)  # default: the cores this process may use (starlabel.cores)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    ds, flux, y, cnames, rows, n_drop, data_sha = load_training_data(sets_path, labels, echo)
    net_cfg = replace(p.network, n_pixels=flux.shape[1], n_labels=len(labels))
    cfg = p.train
    tr, te = split_indices(len(y), cfg.test_fraction, seed)
    outside = range_check(labels, y[tr], y[te])
    echo(f"{len(tr)} training / {len(te)} test spectra (test fraction {cfg.test_fraction:g}, seed {seed})")
    if any(outside.values()):
        echo("test stars outside the training label range: "
             + ", ".join(f"{k} {v}" for k, v in outside.items() if v))
    else:
        echo("all test labels lie within the training ranges")
    labelset = LabelSet.fit(labels, y[tr])

    settings = {"data_sha256": data_sha, "labels": list(labels), "preset": preset, "seed": seed,
                "network": net_cfg.to_dict(), "train": cfg.to_dict()}
    settings_path = ckpt_dir / "settings.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
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
            raise ValueError(f"{out} holds a training with different {', '.join(diff)}; resume with the "
                             "same settings, or use another --out (or delete that directory) to start afresh")
        echo(f"resuming the training in {out}")
    else:
        _write_json(settings_path, settings)

    to = lambda a: torch.as_tensor(a, dtype=torch.float32).to(device)  # noqa: E731
    w = label_weights(ds.catalogue[rows], labels, echo) if cfg.weight_by_errors else None
    data = (to(flux[tr]), to(labelset.to_network(y[tr])), to(flux[te]), to(labelset.to_network(y[te])),
            None if w is None else to(w[tr]), None if w is None else to(w[te]),
            NoiseAugment(flux[tr], list(ds.grid.slices().values()), cfg.noise_augment, device)
            if cfg.noise_augment > 0 else None)
    del flux

    if fused:
        from .fused_train import train_fused

        together = train_fused([(i, run_seed(seed, i)) for i in range(runs)], net_cfg, cfg, data, ckpt_dir,
                               device, callback, progress)
    results = []
    for i in range(runs):
        st = together[i] if fused else train_run(i, run_seed(seed, i), net_cfg, cfg, data,
                                                 ckpt_dir / f"run{i}.safetensors", device, callback, progress)
        refit = (f"; {st['best_test']:.5f} after refitting the output layer" if "test_before_refit" in st else "")
        echo(f"run {i}: {st['epoch']} epochs, best test loss {st.get('test_before_refit', st['best_test']):.5f} "
             f"(epoch {st['best_epoch']}){refit}")
        results.append(st)

    order = sorted(range(runs), key=lambda i: results[i]["best_test"])
    kept = sorted(order[:keep])
    echo(f"kept runs {kept} (lowest test loss); left out {sorted(order[keep:])}")
    split = {"train": cnames[tr].tolist(), "test": cnames[te].tolist()}
    provenance = {"sets": str(Path(sets_path).resolve()), "sha256": data_sha, "n_train": int(len(tr)),
                  "n_test": int(len(te)), "n_dropped_nonfinite": n_drop, "test_outside_train_range": outside,
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(), "device": str(device),
                  "threads": torch.get_num_threads(), "host_cpus": os.cpu_count()}
    return write_bundle(out, grid=ds.grid, labels=labelset, network=net_cfg, train_config=cfg,
                        preset=preset, seed=seed, results=results, kept=kept, split=split,
                        test_rows=rows[te], provenance=provenance)
