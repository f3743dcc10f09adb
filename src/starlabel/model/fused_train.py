"""All runs of an ensemble trained together as one `FusedNetwork` (issue 15 §1).

Each member is what `train.train_run` would make of its seed, advanced in lockstep with the others:

* the same initial weights (`torch.manual_seed(seed)` before `Network(config)`), the same data
  order and the same fresh noise (its own generator, seeded and drawn in the same order as
  `train_run`'s), so each member sees exactly the batches its separate run would see;
* its own Adam state, step count and learning rate (`StackedAdam`, one learning rate per member),
  its own plateau schedule (a torch `ReduceLROnPlateau` per member) and its own early stopping: a
  stopped member leaves the fused module (its best weights kept, the output layer refitted as in
  `train_run`), and the others go on without its cost.

How an epoch runs depends on the device (`fused_epoch`). On a CPU each member's epoch is the single
network's own loop on its slices of the stacked weights, the members side by side on threads
(`_members_side_by_side`, which says why the batched network is not used there), with torch's fused
Adam per member and the dropout masks from the generator its separate run would have used: every
member follows its separate run to float rounding (with one thread per member, as far as measured,
bit for bit). Elsewhere (GPU) the members run as one batched `FusedNetwork`, with Adam's arithmetic
over the stacked parameters (torch's unfused formula) and dropout masks from torch's global
generator, shared by the members: equal in distribution to separate runs, not bit for bit (with
dropout 0 to float rounding). tests/test_fused_train.py checks these. The results have
`train_run`'s layout (per-member `Network` state dicts, history, snapshots), and each finished
member's checkpoint is written in `train_run`'s final format, so bundles are unchanged and a later
`train` (fused or not) finds those runs done. Every epoch each member still training is checkpointed
in `train_run`'s resumable format (its weights, Adam state as torch keeps it, generators, schedule):
an interrupted fused training is continued run by run by `train_run` (on a CPU as the fused
training would have gone on; on a GPU equal in distribution, the dropout generator not being the
one a separate run would have had).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint
from .config import NetworkConfig, TrainConfig
from .fused import FusedNetwork
from .network import Network
from .run import RunResult, RunState, loss_fn, refit_output_layer, train_run

log = logging.getLogger(__name__)


class StackedAdam:
    """Adam (torch's arithmetic, no weight decay, no amsgrad) over parameters stacked along a leading
    member axis, with one learning rate and one step count per member. `keep(idx)` drops members.
    `step()` updates every member with the stacked formula (torch's unfused Adam); `step_member(k,
    params, grads)` updates member `k` alone with torch's fused Adam kernel, the one `train_run`'s
    `Adam(fused=True)` runs on CPU and CUDA, on its slices of the state."""

    def __init__(self, params, lr: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr = lr.clone().double()
        self.betas, self.eps = betas, eps
        m = len(lr)
        self.step_count = torch.zeros(m, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        self.step_count += 1
        bc1 = 1 - b1 ** self.step_count
        bc2_sqrt = (1 - b2 ** self.step_count).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad
            if g is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt.to(p).view(shape)).add_(self.eps)
            p.addcmul_(m / denom, (self.lr / bc1).to(p).view(shape), value=-1.0)

    @torch.no_grad()
    def step_member(self, k: int, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """Member `k`'s step: `params` are its parameters (views of `self.params`' row k, in their
        order, e.g. `FusedNetwork.member_leaves(k)`), `grads` their gradients. Safe to call for
        different members from different threads."""
        self.step_count[k] += 1
        p0 = params[0]
        # a float32 step count, as torch.optim.Adam keeps it (the kernel reads it, it does not add to it)
        step = torch.tensor(float(self.step_count[k]), dtype=torch.float32, device=p0.device)
        b1, b2 = self.betas
        # the kernel walks each tensor's memory in order: autograd.grad may hand back a gradient in
        # another layout (a conv weight's comes transposed), where `.grad` would hold a copy in the
        # parameter's layout
        grads = [g.contiguous() for g in grads]
        torch._fused_adam_(list(params), grads, [m[k] for m in self.exp_avg], [v[k] for v in self.exp_avg_sq],
                           [], [step] * len(params), lr=float(self.lr[k]), beta1=b1, beta2=b2, weight_decay=0.0,
                           eps=self.eps, amsgrad=False, maximize=False)

    def keep(self, idx: torch.Tensor) -> None:
        self.lr, self.step_count = self.lr[idx], self.step_count[idx]
        self.exp_avg = [t[idx.to(t.device)] for t in self.exp_avg]
        self.exp_avg_sq = [t[idx.to(t.device)] for t in self.exp_avg_sq]


def _keep_members(net: FusedNetwork, idx: torch.Tensor) -> None:
    """Reduce `net` to the members `idx` in place: new (sliced) parameters, so that autograd
    keeps no record of the old shapes."""
    with torch.no_grad():
        for plist in (net.conv_w, net.conv_b, net.dense_w, net.dense_b):
            for j in range(len(plist)):
                plist[j] = nn.Parameter(plist[j][idx.to(plist[j].device)].clone())
    net.m = len(idx)
    net._cache = None


def fused_epoch(fused: FusedNetwork, opt: StackedAdam, x: torch.Tensor, y: torch.Tensor, batch: int,
                shuffles: list[torch.Generator], w: torch.Tensor | None = None, noise=None,
                dropout: list[torch.Generator] | None = None, threads: int | None = None,
                batched: bool | None = None) -> list[float]:
    """One pass over (x, y) for every member, each in its own freshly shuffled order (its generator,
    as `train.fit_epoch`); returns each member's mean training loss.

    `batched` (default: not on a CPU): all members as one batched network, dropout masks from torch's
    global generator; otherwise side by side on `threads` threads (`_members_side_by_side`), member
    k's dropout masks from `dropout[k]` (torch's global generator if None)."""
    if not (x.device.type != "cpu" if batched is None else batched):
        return _members_side_by_side(fused, opt, x, y, batch, shuffles, w, noise, dropout, threads)
    n, device = len(x), x.device
    perms = [torch.randperm(n, generator=g).to(device) for g in shuffles]
    fused.train()
    total = torch.zeros(len(shuffles), device=device)
    for i in range(0, n, batch):
        idx = torch.stack([p[i : i + batch] for p in perms])  # (M, b): each member's own batch
        if noise is None:
            xb = x[idx]
        else:
            xb = torch.stack([noise(x[idx[k]], idx[k], g) for k, g in enumerate(shuffles)])
        err = (fused(xb) - y[idx]) ** 2
        if w is not None:
            err = w[idx] * err
        losses = err.mean((1, 2))  # each member's own mean: its gradient is its separate run's
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
        total += losses.detach() * idx.shape[1]
    return (total / n).tolist()


def _member_epoch(fused: FusedNetwork, opt: StackedAdam, k: int, x, y, batch, shuffle, w, noise, dropout) -> float:
    """Member `k`'s epoch: `train.fit_epoch`'s loop with `FusedNetwork.member_forward` on its slices
    of the stacked weights and its fused Adam step (`StackedAdam.step_member`)."""
    n = len(x)
    perm = torch.randperm(n, generator=shuffle)
    leaves = fused.member_leaves(k)
    total = torch.zeros(())
    with torch.enable_grad():
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            xb = x[idx] if noise is None else noise(x[idx], idx, shuffle)
            loss = loss_fn(fused.member_forward(leaves, xb, dropout), y[idx], None if w is None else w[idx])
            opt.step_member(k, leaves, torch.autograd.grad(loss, leaves))
            total += loss.detach() * len(idx)
    return total.item() / n


def _members_side_by_side(fused, opt, x, y, batch, shuffles, w, noise, dropout, threads) -> list[float]:
    """`fused_epoch` on a CPU: each member's whole epoch is one task (`_member_epoch`, the single
    network's own operations on its slices of the stacked weights), handed out one at a time to
    `threads` (default torch.get_num_threads()) worker threads, each running torch single-threaded
    (more threads per member when members are fewer than threads).

    Why not the batched network (profiled 2026-11-30, docs/benchmarks.md): on a CPU one network's
    mini-batch already makes large GEMMs (B·n = 34 560 columns in the second block at batch 64),
    so batching the members' GEMMs gains nothing, while the batched form's other kernels ran slower
    per member on its M× larger arrays (the max-pool backward's comparison against a maximum
    broadcast over an inner axis, the transposing copies of the first dense layer's permuted weights
    and of their gradients): 0.65–0.9× one network per member. Members on threads share nothing
    within an epoch, so no thread waits on another (intra-op threads meet at a barrier in every
    operation, which on shared cores is where the time goes), and the numbers are each member's
    separate run's, dropout included when `dropout` holds the generators of the separate runs."""
    m = len(shuffles)
    threads = max(1, min(threads or torch.get_num_threads(), m))
    gens = dropout if dropout is not None else [None] * m
    fused.train()
    work = lambda k: _member_epoch(fused, opt, k, x, y, batch, shuffles[k], w, noise, gens[k])  # noqa: E731
    if threads == 1:
        return [work(k) for k in range(m)]
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, saved // threads))
    pool = ThreadPoolExecutor(threads)
    try:
        return list(pool.map(work, range(m)))
    finally:  # on Ctrl-C the members under way finish their epoch, the others do not start it
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(saved)


def _eval(net: FusedNetwork, x: torch.Tensor, batch: int) -> torch.Tensor:
    """(M, N, L) predictions of the fused members on the shared test set (eval mode, no autograd).
    On a CPU the batches go one at a time to torch.get_num_threads() worker threads, each running
    torch single-threaded, as `fused.predict_fused` does: with the intra-op threads instead, this
    pass took longer than the training epoch on shared cores (6.9 vs 6.4 s per epoch for 10 paper
    members, 128 test and 256 training spectra, load ≈ 8)."""
    net.eval()
    cpu = x.device.type == "cpu"
    starts = range(0, len(x), batch)
    threads = min(torch.get_num_threads(), len(starts)) if cpu else 1
    with torch.inference_mode():
        net.refresh()
        out = torch.empty(net.m, len(x), net.config.n_labels, dtype=x.dtype, device=x.device)

    def work(i):
        with torch.inference_mode():
            out[:, i : i + batch] = net(x[i : i + batch], 4 if cpu else None)

    if threads > 1:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, starts))
        finally:
            torch.set_num_threads(saved)
    else:
        for i in starts:
            work(i)
    net.train()
    return out


def train_fused(runs: list[tuple[int, int]], net_cfg: NetworkConfig, cfg: TrainConfig, data, ckpt_dir,
                device: torch.device, callback=None, progress: bool = True) -> list[RunResult]:
    """Train the runs [(index, seed), ...] together; returns `train_run`'s result for each, in order.
    `data` is the ensemble's `TrainingData`. Runs whose checkpoint in `ckpt_dir` exists (finished or
    not) are handed to `train_run`, which reports or continues them."""
    x_tr, y_tr, x_te, y_te = data.x_train, data.y_train, data.x_test, data.y_test
    w_tr, w_te, noise = data.w_train, data.w_test, data.noise
    ckpt_dir = Path(ckpt_dir)
    results: dict[int, dict] = {}
    fresh = []
    for index, seed in runs:
        path = ckpt_dir / f"run{index}.safetensors"
        if path.exists():
            results[index] = train_run(index, seed, net_cfg, cfg, data, path, device, callback, progress)
        else:
            fresh.append((index, seed))
    if fresh:
        for st in _train_together(fresh, net_cfg, cfg, x_tr, y_tr, x_te, y_te, w_tr, w_te, noise, ckpt_dir,
                                  device, callback, progress):
            results[st["index"]] = RunResult(RunState.from_json(st), st["_best"], st["_snaps"])
    return [results[i] for i, _ in runs]


def _train_together(runs, net_cfg, cfg, x_tr, y_tr, x_te, y_te, w_tr, w_te, noise, ckpt_dir, device,
                    callback, progress) -> list[dict]:
    nets, drops = [], []
    for _, seed in runs:
        torch.manual_seed(seed)  # as train_run: the same initial weights
        nets.append(Network(net_cfg))
        drops.append(torch.Generator())  # and the dropout masks train_run would draw next (the CPU path)
        drops[-1].set_state(torch.get_rng_state())
    fused = FusedNetwork.from_networks(nets).to(device).train()
    del nets
    m = len(runs)
    opt = StackedAdam(fused.parameters(), torch.full((m,), cfg.learning_rate))
    shuffles = [torch.Generator().manual_seed(seed) for _, seed in runs]
    scheds = []
    for _ in runs:  # a plateau schedule per member, on a stand-in optimizer that only holds its lr
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.learning_rate)
        scheds.append((dummy, torch.optim.lr_scheduler.ReduceLROnPlateau(
            dummy, factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr) if cfg.lr_factor else None))
    states = [{"index": i, "seed": s, "epoch": 0, "best_epoch": 0, "best_test": float("inf"), "bad_epochs": 0,
               "done": False, "train_loss": [], "test_loss": [], "snapshots": []} for i, s in runs]
    best = fused.state_dicts()  # best weights per member (the initial ones, as train_run, until one is better)
    snaps: list[dict] = [{} for _ in runs]
    active = list(range(m))  # run positions still training, in fused-member order
    bar = tqdm(total=cfg.max_epochs, desc=f"runs {runs[0][0]}–{runs[-1][0]} fused", unit="epoch",
               disable=not progress, leave=False)
    while active:
        train_loss = fused_epoch(fused, opt, x_tr, y_tr, cfg.batch_size, [shuffles[r] for r in active], w_tr, noise,
                                 [drops[r] for r in active])
        pred = _eval(fused, x_te, cfg.eval_batch_size)
        stop = []
        for k, r in enumerate(active):
            st = states[r]
            test = loss_fn(pred[k], y_te, w_te).item()
            epoch = st["epoch"] + 1
            st["train_loss"].append(train_loss[k])
            st["test_loss"].append(test)
            st["epoch"] = epoch
            dummy, sched = scheds[r]
            if sched is not None:
                sched.step(test)
                st["sched"] = sched.state_dict()
                opt.lr[k] = dummy.param_groups[0]["lr"]
            if epoch in cfg.snapshot_epochs:
                snaps[r][f"epoch_{epoch}"] = pred[k].cpu()
            if test < st["best_test"] - cfg.min_delta:
                st.update(best_test=test, best_epoch=epoch, bad_epochs=0)
                best[r] = fused.member_state_dict(k)
                snaps[r]["best"] = pred[k].cpu()
            else:
                st["bad_epochs"] += 1
            if st["bad_epochs"] >= cfg.patience or epoch >= cfg.max_epochs or not math.isfinite(test):
                stop.append(k)
        for k in stop:
            r = active[k]
            _finish(states[r], best[r], snaps[r], net_cfg, cfg, x_tr, y_tr, x_te, y_te, w_tr, w_te, device,
                    ckpt_dir)
        for k, r in enumerate(active):
            if k not in stop:  # finished ones were written by _finish
                _save_member(states[r], best[r], snaps[r], fused, opt, k, shuffles[r], scheds[r][1], device,
                             ckpt_dir, drops[r] if device.type == "cpu" else None)
        if callback is not None:
            for r in active:
                callback(states[r]["index"], states[r]["epoch"], dict(states[r]))
        if stop:
            keep = torch.tensor([k for k in range(len(active)) if k not in stop], dtype=torch.long)
            active = [active[k] for k in keep.tolist()]
            if active:
                _keep_members(fused, keep)
                opt.keep(keep)
                opt.params = list(fused.parameters())
                log.info("fused training: %d of %d runs still training", len(active), m)
        bar.update(1)
        bar.set_postfix(active=len(active), best=f"{min(s['best_test'] for s in states):.4f}")
    bar.close()
    return [states[r] | {"_best": best[r], "_snaps": snaps[r]} for r in range(m)]


def _save_member(st, best, snaps, fused, opt, k, shuffle, sched, device, ckpt_dir, dropout=None) -> None:
    """Checkpoint member `k` in `train_run`'s resumable format (weights, best weights, Adam state as
    torch's Adam keeps it, RNG states, schedule, history): `train_run` can continue it. `dropout`:
    the member's dropout generator, saved as the torch RNG state `train_run` restores."""
    net = Network(fused.config)
    weights = fused.member_state_dict(k)
    net.load_state_dict(weights)
    adam = torch.optim.Adam(net.parameters(), lr=float(opt.lr[k]), fused=device.type in ("cpu", "cuda"))
    order = {id(p): j for j, p in enumerate(fused.parameters())}
    by_name = dict(zip([n for n, _ in net.named_parameters()], net.parameters()))
    for (wn, w, bn, b) in fused._names():
        for name, p in ((wn, w), (bn, b)):
            j = order[id(p)]
            adam.state[by_name[name]] = {"step": torch.tensor(float(opt.step_count[k])),
                                         "exp_avg": opt.exp_avg[j][k].detach().cpu().clone(),
                                         "exp_avg_sq": opt.exp_avg_sq[j][k].detach().cpu().clone()}
    ot, oinfo = checkpoint.optimizer_tensors(adam)
    tensors = {f"best.{n}": t for n, t in best.items()} | {f"snap.{n}": v for n, v in snaps.items()}
    tensors |= {f"model.{n}": t for n, t in weights.items()} | ot
    tensors["rng.torch"] = torch.get_rng_state() if dropout is None else dropout.get_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    state = {n: v for n, v in st.items() if not n.startswith("_")} | {"optim": oinfo}
    if sched is not None:
        state["sched"] = sched.state_dict()
    checkpoint.save(Path(ckpt_dir) / f"run{st['index']}.safetensors", tensors, state)


def _finish(st, best, snaps, net_cfg, cfg, x_tr, y_tr, x_te, y_te, w_tr, w_te, device, ckpt_dir) -> None:
    """What `train_run` does when a run stops: refit the output layer on the best weights, name the
    snapshots, and write the finished run's checkpoint in `train_run`'s final format."""
    st["done"] = True
    if cfg.refit_output and np.isfinite(st["best_test"]):
        net = Network(net_cfg).to(device)
        net.load_state_dict(best)
        alpha = refit_output_layer(net, x_tr, y_tr, w_tr)
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(x_te[i : i + cfg.eval_batch_size]) for i in range(0, len(x_te), cfg.eval_batch_size)])
        refitted = loss_fn(pred, y_te, w_te).item()
        if refitted <= st["best_test"]:  # as in train_run: a refit that raises the test loss is not kept
            st["refit_alpha"], st["test_before_refit"], st["best_test"] = alpha, st["best_test"], refitted
            best.update({n: p.detach().clone() for n, p in net.named_parameters()})
            snaps["best"] = pred.cpu()
        else:
            log.info("run %d: refitting the output layer raised the test loss %.5f -> %.5f; keeping the weights "
                     "before the refit", st["index"], st["best_test"], refitted)
    st["snapshots"] = sorted({int(k[6:]) for k in snaps if k.startswith("epoch_")} | {st["best_epoch"]})
    if "best" in snaps:
        snaps[f"epoch_{st['best_epoch']}"] = snaps.pop("best")
    tensors = {f"best.{n}": t for n, t in best.items()} | {f"snap.{k}": v for k, v in snaps.items()}
    checkpoint.save(Path(ckpt_dir) / f"run{st['index']}.safetensors", tensors,
                    {k: v for k, v in st.items() if not k.startswith("_")})
