"""The CNN of Ambrosch et al. (2023, Fig. 5), written for speed on CPU.

Architecture: input spectrum → 3 × [Conv1d → LeakyReLU → MaxPool1d] with increasing filter
counts → flatten → 3 × [Linear → LeakyReLU → Dropout] → Linear (one output per label).

The parameters are exactly those of the plain `nn.Sequential` network (`Network.plain()`
builds it, sharing the weights), so a bundle's weights mean the same thing to any reader.
Only the forward pass is rearranged, with identical results:

* LeakyReLU is monotonic and the bias is constant within a pooling window, so
  `pool(act(conv(x) + b)) == act(max_window(conv(x)) + b)`: the activation runs on the
  pooled (4× smaller) tensor.
* Convolution and pooling become one matrix product: each pooling window of `pool` outputs
  reads `pool + kernel - 1` consecutive input positions; these windows are built from
  non-overlapping blocks of `pool` positions (a reshape and a concatenation, channels-last),
  and one (window × channels) → (pool × filters) weight matrix gives all `pool` outputs at
  once: a dense GEMM instead of a thin 1-channel convolution, and no max_pool indices.
* The GEMM is computed transposed so that the max runs over the outermost axis of one
  contiguous array, and its backward (`_MaxOuter`) uses float arithmetic only.

Inference (no autograd) reuses the window matrices while the weights are unchanged and works
in place. `Network.compile_first_block()` optionally replaces the first block — one input
channel, so its GEMM is thin and memory-bound — by a single fused kernel generated with
`torch.compile` (about 3× faster for that block; equal to float rounding); it is used for
inference on full batches only and falls back to the eager path if compilation fails.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig

log = logging.getLogger(__name__)


def _window_matrix(weight: torch.Tensor, pool: int, n_blocks: int) -> torch.Tensor:
    """Conv1d weight (Co, Ci, k) → (n_blocks·pool·Ci, pool·Co) matrix mapping one window of
    input positions to the `pool` convolution outputs of a pooling window."""
    co, ci, k = weight.shape
    span = n_blocks * pool
    wt = weight.permute(2, 1, 0)  # (k, Ci, Co)
    cols = [F.pad(wt, (0, 0, 0, 0, r, span - k - r)) for r in range(pool)]  # each (span, Ci, Co)
    return torch.stack(cols, 2).reshape(span * ci, pool * co)


def _windows(x: torch.Tensor, n: int, pool: int, n_blocks: int) -> torch.Tensor:
    """(B, L, C) channels-last → (B·n, n_blocks·pool·C): window j starts at input position pool·j."""
    b, length, c = x.shape
    need = pool * (n + n_blocks - 1)
    x = x[:, :need] if length >= need else F.pad(x, (0, 0, 0, need - length))
    blocks = x.reshape(b, n + n_blocks - 1, pool * c)
    win = torch.cat([blocks[:, i : i + n] for i in range(n_blocks)], -1) if n_blocks > 1 else blocks[:, :n]
    return win.reshape(b * n, n_blocks * pool * c)


class _MaxOuter(torch.autograd.Function):
    """max over axis 0 of a contiguous (pool, M) array, with a lean backward: the gradient goes
    to the maximal entry, shared equally in the (rare) case of exact ties, as torch.amax does.
    Written with float arithmetic only (`eq` writes 1.0/0.0 straight into a float array), as
    boolean masks and their conversions are slow on CPU."""

    @staticmethod
    def forward(ctx, y):
        m = y.amax(0)
        ctx.save_for_backward(y, m)
        return m

    @staticmethod
    def backward(ctx, grad):
        y, m = ctx.saved_tensors
        gy = torch.eq(y, m, out=torch.empty_like(y))
        share = grad / gy.sum(0)
        return gy.mul_(share)


def _conv_pool(x: torch.Tensor, conv: nn.Conv1d, pool: int, slope: float) -> torch.Tensor:
    """One Conv1d → LeakyReLU → MaxPool1d block; x and the result are channels-last (B, L, C).

    The GEMM is computed transposed, (pool·Co, K) @ (K, B·n), so that the max over the
    `pool` outputs of a window reduces over the outermost axis of one contiguous array.
    """
    return conv_pool(x, conv.weight, conv.bias, pool, slope)


def conv_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, slope: float) -> torch.Tensor:
    """`_conv_pool` with the Conv1d's weight (Co, Ci, k) and bias (Co,) given as tensors (fused
    training runs each member's slice of the stacked weights through it)."""
    b = x.shape[0]
    k = weight.shape[-1]
    n = (x.shape[1] - k + 1) // pool
    n_blocks = -(-(pool + k - 1) // pool)
    wmat = _window_matrix(weight, pool, n_blocks)
    y = torch.mm(wmat.T, _windows(x, n, pool, n_blocks).T)  # (pool·Co, B·n)
    y = y.view(pool, -1, b * n)
    m = _MaxOuter.apply(y) if torch.is_grad_enabled() and y.requires_grad else y.amax(0)
    z = m + bias[:, None]  # (Co, B·n)
    return F.leaky_relu(z, slope).T.reshape(b, n, -1)


def _conv_pool_infer(x: torch.Tensor, conv: nn.Conv1d, wmat_t: torch.Tensor, pool: int,
                     slope: float) -> torch.Tensor:
    """`_conv_pool` without autograd: `wmat_t` is the cached (pool·Co, K) window matrix, and the
    bias and activation run in place (the same arithmetic as `_conv_pool`)."""
    b = x.shape[0]
    k = conv.kernel_size[0]
    n = (x.shape[1] - k + 1) // pool
    n_blocks = -(-(pool + k - 1) // pool)
    y = torch.mm(wmat_t, _windows(x, n, pool, n_blocks).T).view(pool, -1, b * n)
    z = y.amax(0).add_(conv.bias[:, None])
    return F.leaky_relu_(z, slope).T.reshape(b, n, -1)


def _first_block_pointwise(flux: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
                           slope: float) -> torch.Tensor:
    """The first block (one input channel) as shifted multiply-adds, (B, L) → (B, n, Co)
    channels-last: written for `torch.compile`, which fuses it into one loop (eager it is slow)."""
    b, length = flux.shape
    co, _, k = weight.shape
    n = (length - k + 1) // pool
    y = weight[None, :, 0, 0, None] * flux[:, None, 0 : pool * n]
    for t in range(1, k):
        y = y + weight[None, :, 0, t, None] * flux[:, None, t : t + pool * n]
    m = y.view(b, co, n, pool).amax(-1)
    return F.leaky_relu(m + bias[:, None], slope).transpose(1, 2).contiguous()


_compiled_first_block = None
_compile_lock = threading.Lock()


def _get_compiled_first_block():
    global _compiled_first_block
    with _compile_lock:
        if _compiled_first_block is None:
            _compiled_first_block = torch.compile(_first_block_pointwise, dynamic=False)
        return _compiled_first_block


class Network(nn.Module):
    """One CNN of the ensemble. `forward(flux)`: (B, n_pixels) → (B, n_labels), network space."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        c = config
        self.convs = nn.ModuleList()
        channels, length = 1, c.n_pixels
        for f in c.filters:
            self.convs.append(nn.Conv1d(channels, f, c.kernel))
            channels, length = f, (length - c.kernel + 1) // c.pool
        if length < 1:
            raise ValueError(f"{c.n_pixels} pixels are too few for {len(c.filters)} conv+pool(kernel "
                             f"{c.kernel}, pool {c.pool}) blocks")
        self.n_flat = channels * length
        sizes = (self.n_flat, *c.dense)
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], c.n_labels)
        for m in self.modules():  # Keras' defaults, as the paper used: Glorot-uniform, zero bias
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self._wmats: dict[int, tuple] = {}  # conv index → (weight copy, window matrix)
        self._first_block = None  # compiled first block, with the batch size it was compiled for

    def _wmat_t(self, i: int, conv: nn.Conv1d) -> torch.Tensor:
        """The transposed window matrix of conv `i`, rebuilt only when its weight changed. The
        weight is compared with a stored copy (a few thousand numbers): version counters are
        not bumped by every in-place update (the fused Adam step, for one)."""
        w = conv.weight
        pool = self.config.pool
        n_blocks = -(-(pool + conv.kernel_size[0] - 1) // pool)
        hit = self._wmats.get(i)
        if hit is None or hit[0].device != w.device or hit[0].dtype != w.dtype or not torch.equal(hit[0], w):
            with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable anywhere
                hit = (w.detach().clone(), _window_matrix(w.detach(), pool, n_blocks).T.contiguous())
            self._wmats[i] = hit
        return hit[1]  # contiguous (pool·Co, K): ~10 % faster GEMMs than the transposed view

    def compile_first_block(self, batch: int) -> bool:
        """Use a `torch.compile`d first block for inference batches of exactly `batch` spectra
        (other sizes use the eager path). Compiles now (some seconds, once per process and
        shape) and checks the result against the eager path; returns False, keeping the eager
        path, if anything fails."""
        c = self.config
        try:
            fn = _get_compiled_first_block()
            w, b = self.convs[0].weight, self.convs[0].bias
            x = torch.ones(batch, c.n_pixels, device=w.device, dtype=w.dtype)
            x += 0.01 * torch.randn(batch, c.n_pixels, generator=torch.Generator().manual_seed(0)).to(x)
            with torch.inference_mode():
                got = fn(x, w, b, c.pool, c.negative_slope)
                want = _conv_pool_infer(x.unsqueeze(-1), self.convs[0], self._wmat_t(0, self.convs[0]),
                                        c.pool, c.negative_slope)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()) + 1e-6)
        except Exception as e:  # noqa: BLE001 - any compiler problem: stay on the eager path
            log.warning("torch.compile of the first block failed, using the eager path: %s",
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            self._first_block = None
            return False
        self._first_block = (fn, batch)
        return True

    def forward(self, flux: torch.Tensor) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled():
            return self._forward_infer(flux)
        c = self.config
        x = flux.unsqueeze(-1)  # (B, L, 1) channels-last
        for conv in self.convs:
            x = _conv_pool(x, conv, c.pool, c.negative_slope)
        x = x.transpose(1, 2).reshape(x.shape[0], -1)  # flatten in Conv1d's (C, L) order
        for lin in self.dense:
            x = F.dropout(F.leaky_relu(lin(x), c.negative_slope), c.dropout, self.training)
        return self.out(x)

    def _forward_infer(self, flux: torch.Tensor) -> torch.Tensor:
        """forward() in eval mode without autograd: cached window matrices, in-place ops."""
        return self.out(self.hidden(flux))

    def hidden(self, flux: torch.Tensor) -> torch.Tensor:
        """The last dense layer's activations in eval mode, without autograd: (B, dense[-1]).
        The output layer is a linear map of these (see `train.refit_output_layer`)."""
        c = self.config
        fb = self._first_block
        start = 0
        if fb is not None and flux.shape[0] == fb[1] and flux.is_contiguous():
            x = fb[0](flux, self.convs[0].weight, self.convs[0].bias, c.pool, c.negative_slope)
            start = 1
        else:
            x = flux.unsqueeze(-1)  # (B, L, 1) channels-last
        for i in range(start, len(self.convs)):
            x = _conv_pool_infer(x, self.convs[i], self._wmat_t(i, self.convs[i]), c.pool, c.negative_slope)
        x = x.transpose(1, 2).reshape(x.shape[0], -1)  # flatten in Conv1d's (C, L) order
        for lin in self.dense:
            x = F.leaky_relu_(lin(x), c.negative_slope)
        return x

    def plain(self) -> nn.Sequential:
        """The textbook layer stack, sharing this network's parameters (for checks and export)."""
        c = self.config
        layers: list[nn.Module] = [nn.Unflatten(1, (1, c.n_pixels))]
        for conv in self.convs:
            layers += [conv, nn.LeakyReLU(c.negative_slope), nn.MaxPool1d(c.pool)]
        layers.append(nn.Flatten())
        for lin in self.dense:
            layers += [lin, nn.LeakyReLU(c.negative_slope), nn.Dropout(c.dropout)]
        layers.append(self.out)
        return nn.Sequential(*layers).train(self.training)


def per_spectrum_gradients(network: Network, flux, scale=None, excluded=None) -> np.ndarray:
    """(N, L, P) array of ∂label_l/∂flux_p for each spectrum, times `scale` (network → physical units).

    One backward pass per label on the summed output: spectra do not interact in an
    eval-mode network, so row i of the gradient is the gradient of spectrum i alone. `excluded`: pixels
    the network never reads, which the caller has already set to 1.0 (`exclusion.blanked`, as `Ensemble`
    does for every spectrum it labels); their gradients are 0, since the label does not depend on them."""
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.as_tensor(np.asarray(flux), dtype=dtype, device=device).requires_grad_(True)
    out = network(x)
    n_labels = out.shape[1]
    grads = []
    for i in range(n_labels):
        (g,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=i < n_labels - 1)
        grads.append(g.detach().cpu().numpy())
    g = np.stack(grads, axis=1)
    if scale is not None:
        g = g * np.asarray(scale, dtype=g.dtype)[None, :, None]
    if excluded is not None:
        g[:, :, excluded] = 0.0
    return g
