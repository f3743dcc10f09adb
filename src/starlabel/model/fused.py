"""The M networks of an ensemble as one module: every kernel sees M× larger matrices.

`FusedNetwork(networks)` stacks the parameters of M `Network`s of one config along a leading
member axis and runs them together, with the same conv-as-GEMM rearrangement as `network.py`
(each pooling window read as one row, a (window × channels) → (pool × filters) matrix):

* first block: all members read the same spectrum, so its windows are built once and one GEMM
  with the M members' window matrices stacked (M·pool·Co rows) gives every member's output;
  when each member has its own input (fused training on a GPU), a batched GEMM (`torch.bmm`);
* later blocks: the members' convolutions are a grouped convolution (groups = M), done as one
  `torch.bmm` over the members' window matrices;
* dense layers: `torch.baddbmm` over the stacked weights; the first one's columns are permuted
  once so it reads the channels-last activations without a transpose (Conv1d's flatten order is
  (C, L); the numbers are the same).

`forward(flux)`: (B, n_pixels), or (M, B, n_pixels) with one batch per member, → (M, B, n_labels).
The result equals running each network alone, to float32 rounding (the sums run in another
order). `state_dicts()` gives each member's parameters in the `Network` layout, so bundles do
not change. For inference, `FusedNetwork.of(networks)` builds it frozen, with the window
matrices cached (they are rebuilt when `refresh()` is called after changing weights).

Fused training on a CPU does not use `forward` but one member at a time (`member_leaves`,
`member_forward`: the single network's own operations on the member's slices of the stacked
weights), the members side by side on threads: there the batched form was slower per member
(`fused_train._members_side_by_side` says why).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cores import usable_cores
from .config import NetworkConfig
from .network import Network, _window_matrix, _windows, conv_pool


class _MaxAxis(torch.autograd.Function):
    """max over axis `dim` with the gradient to the maximal entry (shared on exact ties, as
    torch.amax does), float arithmetic only (see `network._MaxOuter`)."""

    @staticmethod
    def forward(ctx, y, dim):
        m = y.amax(dim, keepdim=True)
        ctx.save_for_backward(y, m)
        ctx.dim = dim
        return m.squeeze(dim)

    @staticmethod
    def backward(ctx, grad):
        y, m = ctx.saved_tensors
        gy = torch.eq(y, m, out=torch.empty_like(y))
        share = grad.unsqueeze(ctx.dim) / gy.sum(ctx.dim, keepdim=True)
        return gy.mul_(share), None


def _amax(y: torch.Tensor, dim: int) -> torch.Tensor:
    return _MaxAxis.apply(y, dim) if torch.is_grad_enabled() and y.requires_grad else y.amax(dim)


class FusedNetwork(nn.Module):
    """M networks of one `NetworkConfig` as one module (see the module docstring)."""

    def __init__(self, config: NetworkConfig, m: int):
        super().__init__()
        if m < 1:
            raise ValueError(f"a fused network needs at least one member, got {m}")
        self.config, self.m = config, m
        c = config
        self.conv_w, self.conv_b = nn.ParameterList(), nn.ParameterList()
        channels, length = 1, c.n_pixels
        for f in c.filters:
            self.conv_w.append(nn.Parameter(torch.empty(m, f, channels, c.kernel)))
            self.conv_b.append(nn.Parameter(torch.zeros(m, f)))
            channels, length = f, (length - c.kernel + 1) // c.pool
        if length < 1:
            raise ValueError(f"{c.n_pixels} pixels are too few for {len(c.filters)} conv+pool blocks")
        self.n_len, self.n_ch = length, channels
        sizes = (channels * length, *c.dense, c.n_labels)
        self.dense_w = nn.ParameterList(nn.Parameter(torch.empty(m, b, a)) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dense_b = nn.ParameterList(nn.Parameter(torch.zeros(m, b)) for b in sizes[1:])
        self._cache = None  # inference: (window matrices, dense weights transposed)

    # ------------------------------------------------------------------ conversion

    @classmethod
    def from_networks(cls, networks: list[Network]) -> "FusedNetwork":
        """Stack the parameters of `networks` (copies; the networks are left as they are)."""
        cfg = networks[0].config
        for net in networks[1:]:
            if net.config != cfg:
                raise ValueError(f"cannot fuse networks of different configs: {net.config} vs {cfg}")
        p0 = next(networks[0].parameters())
        fused = cls(cfg, len(networks)).to(device=p0.device, dtype=p0.dtype)
        fused.load_state_dicts([net.state_dict() for net in networks])
        return fused

    @classmethod
    def of(cls, networks: list[Network]) -> "FusedNetwork":
        """A frozen fused copy of `networks` for inference."""
        return cls.from_networks(networks).eval().requires_grad_(False).refresh()

    def _names(self):
        c = self.config
        conv = [(f"convs.{i}.weight", self.conv_w[i], f"convs.{i}.bias", self.conv_b[i]) for i in range(len(c.filters))]
        names = [f"dense.{j}" for j in range(len(c.dense))] + ["out"]
        dense = [(f"{n}.weight", w, f"{n}.bias", b) for n, w, b in zip(names, self.dense_w, self.dense_b)]
        return conv + dense

    def load_state_dicts(self, states: list[dict]) -> None:
        """Set every member's parameters from `Network` state dicts (one per member)."""
        if len(states) != self.m:
            raise ValueError(f"{len(states)} state dicts for {self.m} members")
        with torch.no_grad():
            for wn, w, bn, b in self._names():
                w.copy_(torch.stack([s[wn] for s in states]))
                b.copy_(torch.stack([s[bn] for s in states]))
        self._cache = None

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each member's parameters as a `Network` state dict (detached copies)."""
        return [self.member_state_dict(k) for k in range(self.m)]

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Member `k`'s parameters as a `Network` state dict (detached copies)."""
        out = {}
        for wn, w, bn, b in self._names():
            out[wn] = w[k].detach().clone()
            out[bn] = b[k].detach().clone()
        return out

    def networks(self) -> list[Network]:
        """The members as separate `Network`s."""
        nets = []
        p = self.conv_w[0]
        for s in self.state_dicts():
            net = Network(self.config).to(device=p.device, dtype=p.dtype)
            net.load_state_dict(s)
            nets.append(net)
        return nets

    # ------------------------------------------------------------------ forward

    def _kernels(self):
        """Window matrices (first one as one (pool·M·Co, K) matrix, rows ordered (pool, member,
        filter); later ones (M, pool·Co, K)) and the dense weights as (M, in, out), the first with
        its inputs in channels-last flatten order."""
        c = self.config
        nb = -(-(c.pool + c.kernel - 1) // c.pool)
        wm = [torch.stack([_window_matrix(w[k], c.pool, nb).T for k in range(self.m)]) for w in self.conv_w]
        first = wm[0].reshape(self.m, c.pool, -1, wm[0].shape[-1]).transpose(0, 1).reshape(-1, wm[0].shape[-1])
        w0 = self.dense_w[0]
        w0 = w0.reshape(self.m, w0.shape[1], self.n_ch, self.n_len).transpose(2, 3).reshape(w0.shape)
        dense = [w0.transpose(1, 2)] + [w.transpose(1, 2) for w in self.dense_w[1:]]
        return [first.contiguous()] + [w.contiguous() for w in wm[1:]], dense

    def refresh(self) -> "FusedNetwork":
        """Rebuild the cached inference matrices (call after changing the weights in eval mode)."""
        with torch.no_grad():
            self._cache = self._kernels()
        return self

    def forward(self, flux: torch.Tensor, conv_batch: int | None = None) -> torch.Tensor:
        """(B, n_pixels) or (M, B, n_pixels) → (M, B, n_labels). `conv_batch`: in inference, run
        the conv blocks on sub-batches of this many spectra (their activations stay in the CPU
        caches) and the dense layers on the whole batch (their weights are read once per batch)."""
        infer = not self.training and not torch.is_grad_enabled()
        if infer and self._cache is None:
            self.refresh()
        wmats, dense = self._cache if infer else self._kernels()
        b = flux.shape[-2]
        if infer and conv_batch and b > conv_batch:
            x = torch.empty(self.m, b, self.n_len * self.n_ch, dtype=flux.dtype, device=flux.device)
            for i in range(0, b, conv_batch):
                x[:, i : i + conv_batch] = self._features(flux[..., i : i + conv_batch, :], wmats, infer)
        else:
            x = self._features(flux, wmats, infer)
        return self._head(x, dense, infer)

    def member_leaves(self, k: int) -> list[torch.Tensor]:
        """Member `k`'s parameters, in `parameters()` order, as leaf tensors that share the stacked
        parameters' memory (an update of either is seen by both) but have their own autograd
        version counters: one member's optimizer step does not invalidate another member's graph,
        so members can train side by side on threads (`fused_train`)."""
        return [p.data[k].requires_grad_() for p in self.parameters()]

    def member_forward(self, leaves: list[torch.Tensor], flux: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Member forward with autograd, (B, n_pixels) → (B, n_labels), on `member_leaves(k)`: the
        operations of `Network.forward` (`network.conv_pool`, `F.linear`, LeakyReLU, dropout), so its
        numbers and gradients are the single network's. In training mode the dropout masks come from
        `generator` (torch's global one if None), drawn as `F.dropout` draws them on a CPU."""
        c = self.config
        nc, nd = len(self.conv_w), len(self.dense_w)
        cw, cb, dw, db = leaves[:nc], leaves[nc : 2 * nc], leaves[2 * nc : 2 * nc + nd], leaves[2 * nc + nd :]
        x = flux.unsqueeze(-1)  # (B, L, 1) channels-last
        for w, b in zip(cw, cb):
            x = conv_pool(x, w, b, c.pool, c.negative_slope)
        x = x.transpose(1, 2).reshape(x.shape[0], -1)  # flatten in Conv1d's (C, L) order
        for w, b in zip(dw[:-1], db[:-1]):
            x = F.leaky_relu(F.linear(x, w, b), c.negative_slope)
            if self.training and c.dropout > 0:
                if generator is None:
                    x = F.dropout(x, c.dropout, True)
                else:  # ATen's CPU dropout: a Bernoulli(1 - p) mask divided by 1 - p, times the input
                    x = x * torch.empty_like(x).bernoulli_(1 - c.dropout, generator=generator).div_(1 - c.dropout)
        return F.linear(x, dw[-1], db[-1])

    def _features(self, flux, wmats, infer) -> torch.Tensor:
        """The conv blocks: → (M, B, n·C), flattened channels-last."""
        c = self.config
        m, pool, nb = self.m, c.pool, -(-(c.pool + c.kernel - 1) // c.pool)
        b = flux.shape[-2]
        n = (flux.shape[-1] - c.kernel + 1) // pool
        if flux.dim() == 2:  # one GEMM for every member: (pool·M·Co, K) @ (K, B·n)
            win = _windows(flux.unsqueeze(-1), n, pool, nb)
            y = torch.mm(wmats[0], win.T).view(pool, m, -1, b * n)
            z = _amax(y, 0)  # (M, Co, B·n)
        else:  # one batch per member
            if flux.shape[0] != m:
                raise ValueError(f"input has {flux.shape[0]} member batches for {m} members")
            win = _windows(flux.reshape(m * b, -1, 1), n, pool, nb).view(m, b * n, -1)
            k = win.shape[-1]
            w0 = wmats[0].view(pool, m, -1, k).transpose(0, 1).reshape(m, -1, k)
            z = _amax(torch.bmm(w0, win.transpose(1, 2)).view(m, pool, -1, b * n), 1)
        x = self._act(z, self.conv_b[0], infer)  # (M, Co, B·n)
        for i in range(1, len(c.filters)):
            x = x.transpose(1, 2).reshape(m * b, n, -1)  # channels-last per member
            n = (n - c.kernel + 1) // pool
            win = _windows(x, n, pool, nb).view(m, b * n, -1)
            y = torch.bmm(wmats[i], win.transpose(1, 2)).view(m, pool, -1, b * n)
            x = self._act(_amax(y, 1), self.conv_b[i], infer)
        return x.view(m, -1, b, n).permute(0, 2, 3, 1).reshape(m, b, -1)

    def _head(self, x, dense, infer) -> torch.Tensor:
        """The dense layers on (M, B, n·C) features → (M, B, n_labels)."""
        c = self.config
        last = len(dense) - 1
        for j, (w, bias) in enumerate(zip(dense, self.dense_b)):
            x = torch.baddbmm(bias.unsqueeze(1), x, w)
            if j < last:
                x = F.leaky_relu_(x, c.negative_slope) if infer else F.leaky_relu(x, c.negative_slope)
                if self.training and c.dropout > 0:
                    x = F.dropout(x, c.dropout, True)
        return x

    def _act(self, z: torch.Tensor, bias: torch.Tensor, infer: bool) -> torch.Tensor:
        if infer:
            return F.leaky_relu_(z.add_(bias.unsqueeze(-1)), self.config.negative_slope)
        return F.leaky_relu(z + bias.unsqueeze(-1), self.config.negative_slope)


def fused_of(ensemble) -> FusedNetwork:
    """The ensemble's networks fused (built once, rebuilt if any parameter was changed since)."""
    key = tuple((id(p), p._version) for net in ensemble.networks for p in net.parameters())
    hit = getattr(ensemble, "_fused_cache", None)
    if hit is None or hit[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            hit = (key, FusedNetwork.of(ensemble.networks))
        ensemble._fused_cache = hit
    return hit[1]


def predict_fused(ensemble, x: torch.Tensor, batch: int | None = None, threads: int | None = None,
                  conv_batch: int | None = None) -> np.ndarray:
    """(M, N, L) network-space predictions of the ensemble's kept networks through one
    `FusedNetwork`. On the CPU, batches of `batch` spectra (default 128) are handed out one at
    a time to `threads` worker threads (default: torch.get_num_threads(), at most
    `cores.usable_cores()`), each single-threaded, as in `Ensemble.predict_each`; the conv blocks run on sub-batches of `conv_batch` (default 4)
    spectra. The numbers do not depend on `batch`, `conv_batch` or the thread count beyond
    float rounding."""
    net = fused_of(ensemble)
    device = ensemble.device
    cpu = device.type == "cpu"
    batch = batch or (128 if cpu else 1024)
    conv_batch = conv_batch or (4 if cpu else None)
    out = np.empty((net.m, len(x), net.config.n_labels), dtype=np.float32)
    starts = range(0, len(x), batch)

    def work(i):
        with ensemble.inference():
            out[:, i : i + batch] = net(x[i : i + batch].to(device), conv_batch).float().cpu().numpy()

    if not cpu:
        for i in starts:
            work(i)
        return out
    threads = max(1, min(threads or min(torch.get_num_threads(), usable_cores()), len(starts)))
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads == 1:
            for i in starts:
                work(i)
        else:  # batches handed out one at a time: a thread on a core shared with other work takes fewer
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, starts))
    finally:
        torch.set_num_threads(saved)
    return out
