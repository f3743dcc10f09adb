"""One training run of one network (paper Sect. 3.2): mini-batch epochs, early stopping, checkpoints
that resume exactly, fresh-noise augmentation and the output-layer refit. The ensemble around it is
`train.py` (one run after another) or `fused_train.py` (all runs as one fused network)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..uncertainty import pixel_noise
from . import checkpoint
from .config import NetworkConfig, TrainConfig
from .network import Network

log = logging.getLogger(__name__)


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
    quality cuts, and their few repaired pixels hold plausible flux.

    `mask_setups` > 0: each spectrum of a mini-batch loses one of its setups (chosen at random) with
    this probability, replaced by exactly 1.0 without noise -- what `prepare` writes for a star
    observed in one setup only (mask bit MASK_MISSING_SETUP) -- so that the networks learn to label
    such stars from the setup they have (issue 10; not in the paper)."""

    def __init__(self, flux: np.ndarray, slices, factor: float, device: torch.device, mask_setups: float = 0.0):
        self.slices = list(slices)
        self.factor = factor
        self.mask_setups = mask_setups if len(self.slices) > 1 else 0.0
        self.sigma = torch.as_tensor(factor * pixel_noise(flux, self.slices), device=device)

    def __call__(self, xb: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.factor > 0:
            eps = torch.randn(xb.shape, generator=gen).to(xb.device)
            sigma = self.sigma[idx]
            for j, s in enumerate(self.slices):
                eps[:, s] *= sigma[:, j : j + 1]
            xb = xb + eps
        if self.mask_setups > 0:
            hit = (torch.rand(len(xb), generator=gen) < self.mask_setups).to(xb.device)
            which = torch.randint(len(self.slices), (len(xb),), generator=gen).to(xb.device)
            for j, s in enumerate(self.slices):
                xb[hit & (which == j), s] = 1.0
        return xb


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
