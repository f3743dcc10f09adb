"""The ensemble as one fused network (issue 15 §1): the same numbers as the networks one by one."""

import numpy as np
import pytest
import torch

from starlabel.labels import LabelSet
from starlabel.model.config import NetworkConfig
from starlabel.model.ensemble import Ensemble
from starlabel.model.fused import FusedNetwork
from starlabel.model.network import Network

SMALL = NetworkConfig(n_pixels=601, filters=(3, 5), kernel=7, pool=3, dense=(16,), n_labels=2)


def _nets(cfg, m, seed=0):
    torch.manual_seed(seed)
    nets = []
    for _ in range(m):
        net = Network(cfg)
        for p in net.parameters():  # non-zero biases, so their placement is tested too
            torch.nn.init.normal_(p, std=0.1)
        nets.append(net.eval())
    return nets


def _x(cfg, n, seed=1):
    x = 1 + 0.05 * torch.randn(n, cfg.n_pixels, generator=torch.Generator().manual_seed(seed))
    x[0, 100:140] = 1.0  # ties inside pooling windows
    return x


@pytest.mark.parametrize("cfg", [NetworkConfig(), SMALL])
def test_fused_forward_equals_each_network(cfg):
    nets = _nets(cfg, 3)
    x = _x(cfg, 6)
    with torch.no_grad():
        want = torch.stack([net.plain().eval()(x) for net in nets])  # the textbook layer stack
    fused = FusedNetwork.of(nets)
    with torch.inference_mode():
        tol = dict(rtol=1e-5, atol=1e-5 * float(want.abs().max()))
        torch.testing.assert_close(fused(x), want, **tol)
        torch.testing.assert_close(fused(x, conv_batch=4), want, **tol)  # conv blocks in sub-batches
        torch.testing.assert_close(fused(x.expand(3, -1, -1)), want, **tol)  # one batch per member
    assert fused(x).shape == (3, 6, cfg.n_labels)


def test_fused_gradients_equal_each_network():
    nets = _nets(SMALL, 2)
    x = _x(SMALL, 5)
    fused = FusedNetwork.from_networks(nets).eval()  # eval: no dropout, so the numbers are comparable
    for member_input in (x, torch.stack([x, x.flip(0)])):
        out = fused(member_input)
        grads = torch.autograd.grad(out.square().sum(), list(fused.parameters()))
        named = dict(zip([n for n, _ in fused.named_parameters()], grads))
        for k, net in enumerate(nets):
            xk = member_input if member_input.dim() == 2 else member_input[k]
            gk = dict(zip([n for n, _ in net.named_parameters()],
                          torch.autograd.grad(net(xk).square().sum(), list(net.parameters()))))
            torch.testing.assert_close(named["conv_w.1"][k], gk["convs.1.weight"], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(named["conv_b.0"][k], gk["convs.0.bias"], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(named["dense_w.0"][k], gk["dense.0.weight"], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(named["dense_b.1"][k], gk["out.bias"], rtol=1e-4, atol=1e-5)


def test_state_dicts_round_trip_in_network_layout():
    nets = _nets(SMALL, 3)
    fused = FusedNetwork.from_networks(nets)
    states = fused.state_dicts()
    for net, st in zip(nets, states):
        ref = net.state_dict()
        assert st.keys() == ref.keys()
        for k in ref:
            assert torch.equal(st[k], ref[k])
    with pytest.raises(ValueError, match="different configs"):
        FusedNetwork.from_networks([nets[0], Network(NetworkConfig(n_pixels=601, n_labels=2))])


def test_ensemble_predict_each_fused_equals_per_network():
    nets = [n.requires_grad_(False) for n in _nets(SMALL, 3)]
    labels = LabelSet.fit(("A", "B"), np.random.default_rng(0).normal(size=(20, 2)))
    ens = Ensemble(nets, labels, grid=None, manifest={}, device="cpu")
    x = _x(SMALL, 300).numpy()
    each = ens.predict_each(x, fused=False)
    for kw in ({}, {"fused": True, "threads": 2, "batch": 7}, {"fused": True, "threads": 1}):
        got = ens.predict_each(x, **kw)
        np.testing.assert_allclose(got, each, rtol=1e-5, atol=1e-5 * np.abs(each).max())
    # the cached fused copy follows changed weights
    with torch.no_grad():
        nets[1].out.bias.add_(1.0)
    np.testing.assert_allclose(ens.predict_each(x), ens.predict_each(x, fused=False), rtol=1e-5,
                               atol=1e-5 * np.abs(each).max())


@pytest.mark.parametrize("cfg", [NetworkConfig(n_pixels=2000), SMALL])
def test_member_forward_equals_batched_forward_and_network(cfg):
    """Fused training on a CPU runs each member alone (`member_leaves`, `member_forward`): its output
    and gradients equal the batched fused network's (the GPU path) to float32 rounding, and the
    single network's bit for bit, dropout masks included when drawn from the same generator state."""
    nets = _nets(cfg, 3)
    x = torch.stack([_x(cfg, 6, seed=s) for s in (1, 2, 3)])
    fused = FusedNetwork.from_networks(nets).eval()
    out = fused(x)
    g_batched = torch.autograd.grad(out.square().sum(), list(fused.parameters()))
    for k in range(3):
        leaves = fused.member_leaves(k)
        got = fused.member_forward(leaves, x[k])
        torch.testing.assert_close(got, out[k], rtol=1e-5, atol=1e-5)
        for g, gb in zip(torch.autograd.grad(got.square().sum(), leaves), g_batched):
            torch.testing.assert_close(g, gb[k], rtol=1e-4, atol=1e-5)
    fused.train()
    for k, net in enumerate(nets):
        net.train()
        state = torch.Generator().manual_seed(7).get_state()
        gen = torch.Generator()
        gen.set_state(state)
        got = fused.member_forward(fused.member_leaves(k), x[k], gen)
        torch.set_rng_state(state)
        want = net(x[k])
        assert torch.equal(got, want)
