"""The training loop of the CNN ensemble (paper Sect. 3.2 and 4), on arrays: the one training loop of the package.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..grid import Grid
from ..io.atomic import atomic_path
from ..labels import LabelSet
from ..uncertainty import pixel_noise
from . import checkpoint
from .config import NetworkConfig, Preset, TrainConfig
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


# ----------------------------------------------------------------------------- split


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



# ----------------------------------------------------------------------------- one run


@dataclass
class TrainingData:
    """The fixed train/test split of an ensemble in network space, on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    w_train: torch.Tensor | None = None  # per-star, per-label loss weights (weight_by_errors)
    w_test: torch.Tensor | None = None
    noise: NoiseAugment | None = None


@dataclass
class RunState:
    """What a run's checkpoint remembers between epochs (JSON in the safetensors metadata)."""

    index: int
    seed: int
    epoch: int = 0
    best_epoch: int = 0
    best_test: float = float("inf")
    bad_epochs: int = 0
    done: bool = False
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    snapshots: list[int] = field(default_factory=list)
    sched: dict | None = None  # ReduceLROnPlateau state
    refit_alpha: list[float] | None = None  # ridge αs of the output-layer refit
    test_before_refit: float | None = None

    def to_json(self) -> dict:
        """The checkpoint metadata: unset optional entries left out, as checkpoints always had them."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict) -> "RunState":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class RunResult:
    """A finished run: its state, its best weights and its test-set predictions at snapshot epochs."""

    state: RunState
    best: dict[str, torch.Tensor]
    snapshots: dict[str, torch.Tensor]


def train_run(index: int, seed: int, net_cfg: NetworkConfig, cfg: TrainConfig, data: TrainingData,
              ckpt_path: Path | None, device: torch.device, callback=None, progress: bool = True) -> RunResult:
    """Train (or resume from `ckpt_path`, or just report) run `index`. Without `ckpt_path` nothing is
    written and an interrupted run starts afresh."""
    torch.manual_seed(seed)
    net = Network(net_cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate,
                           fused=device.type in ("cpu", "cuda"))
    shuffle = torch.Generator().manual_seed(seed)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor, patience=cfg.lr_patience,
                                                        min_lr=cfg.min_lr) if cfg.lr_factor else None)
    names = [n for n, _ in net.named_parameters()]
    st = RunState(index, seed)
    best = {n: p.detach().clone() for n, p in net.named_parameters()}
    snaps: dict[str, torch.Tensor] = {}
    if ckpt_path is not None and ckpt_path.exists():
        tensors, saved = checkpoint.load(ckpt_path)
        if saved.get("seed") != seed:
            raise ValueError(f"{ckpt_path} belongs to a run with seed {saved.get('seed')}, not {seed}")
        optim = saved.pop("optim", None)
        st = RunState.from_json(saved)
        best = {n: tensors[f"best.{n}"].to(device) for n in names}
        snaps = {k[5:]: v for k, v in tensors.items() if k.startswith("snap.")}
        if st.done:
            return RunResult(st, best, snaps)
        net.load_state_dict({n: tensors[f"model.{n}"] for n in names})
        checkpoint.restore_optimizer(opt, tensors, optim)
        if sched is not None and st.sched is not None:
            sched.load_state_dict(st.sched)
        torch.set_rng_state(tensors["rng.torch"])
        shuffle.set_state(tensors["rng.shuffle"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"])

    def save(final: bool):
        if ckpt_path is None:
            return
        tensors = {f"best.{n}": t for n, t in best.items()}
        tensors |= {f"snap.{k}": v for k, v in snaps.items()}
        state = st.to_json()
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

    bar = tqdm(total=cfg.max_epochs, initial=st.epoch, desc=f"run {index}", unit="epoch",
               disable=not progress, leave=False)
    net.train()
    while not st.done:
        epoch = st.epoch + 1
        train_loss = fit_epoch(net, opt, data.x_train, data.y_train, cfg.batch_size, shuffle, data.w_train,
                               data.noise)
        pred = _predict(net, data.x_test, cfg.eval_batch_size)
        test = loss_fn(pred, data.y_test, data.w_test).item()
        st.train_loss.append(train_loss)
        st.test_loss.append(test)
        st.epoch = epoch
        if sched is not None:
            sched.step(test)
            st.sched = sched.state_dict()
        if epoch in cfg.snapshot_epochs:
            snaps[f"epoch_{epoch}"] = pred.cpu()
        if test < st.best_test - cfg.min_delta:
            st.best_test, st.best_epoch, st.bad_epochs = test, epoch, 0
            best = {n_: p.detach().clone() for n_, p in net.named_parameters()}
            snaps["best"] = pred.cpu()
        else:
            st.bad_epochs += 1
        if st.bad_epochs >= cfg.patience or epoch >= cfg.max_epochs or not np.isfinite(test):
            st.done = True
            if cfg.refit_output and np.isfinite(st.best_test):
                net.load_state_dict(best)
                unrefitted = best, snaps.get("best")
                st.refit_alpha = refit_output_layer(net, data.x_train, data.y_train, data.w_train)
                best = {n_: p.detach().clone() for n_, p in net.named_parameters()}
                pred = _predict(net, data.x_test, cfg.eval_batch_size)
                st.test_before_refit = st.best_test
                st.best_test = loss_fn(pred, data.y_test, data.w_test).item()
                snaps["best"] = pred.cpu()
                if not st.best_test <= st.test_before_refit:  # the refit made this run worse: undo it
                    log.info("run %d: refitting the output layer raised the test loss %.5f -> %.5f; keeping "
                             "the weights before the refit", index, st.test_before_refit, st.best_test)
                    best, st.best_test, st.test_before_refit, st.refit_alpha = (
                        unrefitted[0], st.test_before_refit, None, None)
                    net.load_state_dict(best)
                    if unrefitted[1] is not None:
                        snaps["best"] = unrefitted[1]
            st.snapshots = sorted({int(k[6:]) for k in snaps if k.startswith("epoch_")} | {st.best_epoch})
            if "best" in snaps:
                snaps[f"epoch_{st.best_epoch}"] = snaps.pop("best")
        save(final=st.done)
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4f}", test=f"{test:.4f}", best=f"{st.best_test:.4f}")
        if callback is not None:
            callback(index, epoch, st.to_json())
    bar.close()
    return RunResult(st, best, snaps)


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
        _write_json(path, settings)
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


def fit_runs(flux: np.ndarray, y: np.ndarray, names, grid: Grid, p: Preset, seed: int = 0, ids=None,
             weights: np.ndarray | None = None, checkpoint_dir=None, callback=None, device=None,
             progress: bool = True) -> TrainingRecord:
    """Train `p.runs` networks that differ only in their seed on one fixed random split of (flux, y)
    and keep the `p.keep` with the lowest test loss. With `checkpoint_dir` every epoch is
    checkpointed there and a second call resumes (other data or settings are refused)."""
    names = tuple(names)
    flux = np.asarray(flux, dtype=np.float32)
    y = np.asarray(y, dtype=float)
    if flux.ndim != 2 or y.shape != (len(flux), len(names)):
        raise ValueError(f"flux {flux.shape} and labels {y.shape} do not fit: expected (N, pixels) and "
                         f"(N, {len(names)}) for the labels {list(names)}")
    if flux.shape[1] != grid.n_pixels:
        raise ValueError(f"flux has {flux.shape[1]} pixels but the grid {grid.names} has {grid.n_pixels}")
    ids = np.asarray([f"{i}" for i in range(len(y))] if ids is None else ids).astype(str)
    device = pick_device(device)
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

    to = lambda a: torch.as_tensor(a, dtype=torch.float32).to(device)  # noqa: E731
    w = None if weights is None else np.asarray(weights, dtype=float)
    data = TrainingData(to(flux[tr]), to(labelset.to_network(y[tr])), to(flux[te]), to(labelset.to_network(y[te])),
                        None if w is None else to(w[tr]), None if w is None else to(w[te]),
                        NoiseAugment(flux[tr], list(grid.slices().values()), cfg.noise_augment, device)
                        if cfg.noise_augment > 0 else None)
    results = []
    for i in range(p.runs):
        r = train_run(i, run_seed(seed, i), net_cfg, cfg, data,
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
