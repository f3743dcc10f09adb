"""All runs trained together as one fused network (issue 15 §1): each member is its separate run."""

import json

import numpy as np
import pytest
import torch

from starlabel.model.config import NetworkConfig, TrainConfig
from starlabel.model.fused_train import train_fused
from starlabel.model.run import NoiseAugment, TrainingData, train_run
from starlabel.stages.train import train
from toys import LABELS, TOY_GRID, make_sets, toy_spectra

NET = NetworkConfig(n_pixels=TOY_GRID.n_pixels, n_labels=len(LABELS), filters=(4, 8), kernel=5, pool=4,
                    dense=(16, 8), dropout=0.0)


def _data(n=240, noise=1.0):
    flux, cat = toy_spectra(n, seed=3)
    y = np.column_stack([cat[k] for k in LABELS])
    y = (y - y.mean(0)) / y.std(0)
    te = np.arange(n)[np.arange(n) % 5 == 0]
    tr = np.arange(n)[np.arange(n) % 5 != 0]
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    aug = NoiseAugment(flux[tr], list(TOY_GRID.slices().values()), noise, torch.device("cpu")) if noise else None
    return TrainingData(t(flux[tr]), t(y[tr]), t(flux[te]), t(y[te]), None, None, aug)


@pytest.mark.slow
def test_fused_runs_follow_separate_runs_without_dropout(tmp_path):
    """Without dropout nothing random is shared: every member retraces its separate run (same
    initial weights, batches, fresh noise, Adam steps, learning-rate cuts and early stopping) to
    float rounding — including the epoch it stops at, which differs between the members. (At larger
    learning rates some of these toy runs are chaotic: a 1e-7 change of the input changes their test
    loss by 1e-4 within three epochs, separate or fused; these settings keep every run tame.)"""
    cfg = TrainConfig(learning_rate=1e-3, batch_size=16, max_epochs=8, patience=1, lr_patience=1,
                      noise_augment=1.0, refit_output=True)
    data = _data()
    runs = [(0, 11), (1, 12), (2, 13)]
    fused = train_fused(runs, NET, cfg, data, tmp_path / "fused", torch.device("cpu"), progress=False)
    for (i, seed), got in zip(runs, fused):
        want = train_run(i, seed, NET, cfg, data, tmp_path / f"sep{i}.safetensors", torch.device("cpu"),
                         progress=False)
        assert got.state.epoch == want.state.epoch and got.state.best_epoch == want.state.best_epoch
        np.testing.assert_allclose(got.state.test_loss, want.state.test_loss, rtol=1e-4)
        np.testing.assert_allclose(got.state.train_loss, want.state.train_loss, rtol=1e-4)
        assert got.state.refit_alpha == want.state.refit_alpha
        np.testing.assert_allclose(got.state.best_test, want.state.best_test, rtol=1e-3)
        assert got.best.keys() == want.best.keys()
        for k in want.best:  # the ridge refit of the output layer amplifies rounding a little
            tol = dict(rtol=1e-2, atol=1e-2) if k.startswith("out.") else dict(rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(got.best[k], want.best[k], **tol)
        assert got.state.snapshots == want.state.snapshots
    assert len({r.state.epoch for r in fused}) > 1, "the members should stop at different epochs here"


def test_stopped_member_is_frozen_and_keeps_its_best_weights(tmp_path):
    """Members stop on their own: the first to stop keeps the weights of its best epoch (its test
    loss there is the one recorded), while the others train on."""
    cfg = TrainConfig(learning_rate=2e-2, batch_size=32, max_epochs=8, patience=1, lr_factor=None,
                      noise_augment=0.0, refit_output=False)
    data = _data(noise=0)
    runs = [(0, 1), (1, 2), (2, 3), (3, 4)]
    res = train_fused(runs, NET, cfg, data, tmp_path, torch.device("cpu"), progress=False)
    from starlabel.model.network import Network

    for st in res:
        assert st.state.done and st.state.epoch <= cfg.max_epochs
        assert st.state.best_test == min(st.state.test_loss) and st.state.best_epoch == 1 + int(np.argmin(st.state.test_loss))
        net = Network(NET).eval()
        net.load_state_dict(st.best)
        with torch.inference_mode():
            loss = torch.nn.functional.mse_loss(net(data.x_test), data.y_test).item()
        assert loss == pytest.approx(st.state.best_test, rel=1e-4)
        assert (tmp_path / f"run{st.state.index}.safetensors").exists()
    assert min(st.state.epoch for st in res) < max(st.state.epoch for st in res)


@pytest.mark.slow
def test_fused_training_as_good_as_separate_and_bundle_unchanged(tmp_path):
    """With dropout (the quick preset) the runs are equal in distribution only: the fused ensemble's
    test losses are as low as the separate runs', and its bundle has the same files and layout."""
    sets = make_sets(tmp_path / "SETS.h5", n=250)
    kw = dict(labels=LABELS, preset="quick", progress=False, max_epochs=10, patience=3,
              batch_size=16, learning_rate=5e-3, runs=3, keep=2, seed=5)
    sep = train(sets, tmp_path / "sep", **kw)
    fus = train(sets, tmp_path / "fus", fused=True, **kw)
    ms, mf = (json.loads((p / "manifest.json").read_text()) for p in (sep, fus))
    layout = lambda m: sorted("run.safetensors" if f.startswith("run") else f for f in m["files"])  # noqa: E731
    assert layout(ms) == layout(mf) and len(mf["kept"]) == 2
    ls = np.array([r["test_loss"] for r in ms["runs"]])
    lf = np.array([r["test_loss"] for r in mf["runs"]])
    assert np.all(np.isfinite(lf))
    assert abs(np.log(np.median(lf) / np.median(ls))) < np.log(1.5), (ls, lf)
    from starlabel.model.ensemble import Ensemble

    ens = Ensemble.load(fus)
    flux, _ = toy_spectra(20, seed=9)
    pred = ens.predict(flux)
    mean, std = pred.mean, pred.std
    assert mean.shape == (20, len(LABELS)) and np.all(np.isfinite(mean)) and np.all(std > 0)
    # a later non-fused run of the same command finds every run done and writes the same bundle
    again = train(sets, tmp_path / "fus", **kw)
    assert json.loads((again / "manifest.json").read_text())["runs"] == mf["runs"]


def test_cli_has_fused_device_threads():
    from starlabel.cli import build_parser

    args = build_parser().parse_args(["train", "S.h5", "--out", "m", "--fused", "--device", "cpu", "--threads", "1"])
    assert args.fused and args.device == "cpu" and args.threads == 1
    args = build_parser().parse_args(["predict", "m", "d.h5", "--out", "o.fits", "--device", "cpu", "--threads", "2"])
    assert args.device == "cpu" and args.threads == 2


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_interrupted_fused_training_continues_run_by_run(tmp_path, dropout):
    """Every epoch each member is checkpointed in train_run's format: after an interruption the
    runs continue (by train_run) to what the uninterrupted fused training gives, to float rounding
    (on a CPU each member's dropout generator is checkpointed as the one train_run restores)."""
    net = NetworkConfig(**{**NET.__dict__, "dropout": dropout})
    cfg = TrainConfig(learning_rate=1e-3, batch_size=16, max_epochs=6, patience=1, lr_patience=1,
                      noise_augment=1.0, refit_output=False)
    data = _data()
    runs = [(0, 11), (1, 12), (2, 13)]
    whole = train_fused(runs, net, cfg, data, tmp_path / "whole", torch.device("cpu"), progress=False)

    def stop(index, epoch, st):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(runs, net, cfg, data, tmp_path / "cut", torch.device("cpu"), callback=stop, progress=False)
    again = train_fused(runs, net, cfg, data, tmp_path / "cut", torch.device("cpu"), progress=False)
    for a, b in zip(whole, again):
        assert a.state.epoch == b.state.epoch and a.state.best_epoch == b.state.best_epoch
        np.testing.assert_allclose(a.state.test_loss, b.state.test_loss, rtol=1e-4)
        for k in a.best:
            torch.testing.assert_close(a.best[k], b.best[k], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_fused_runs_follow_separate_runs_with_dropout(tmp_path):
    """On a CPU each member draws its dropout masks from the generator its separate run would use,
    so with dropout, too, every member retraces its separate run (one torch thread: bit for bit
    as far as checked here; the tolerances allow for float rounding)."""
    net = NetworkConfig(**{**NET.__dict__, "dropout": 0.2})
    cfg = TrainConfig(learning_rate=1e-3, batch_size=16, max_epochs=4, patience=2, lr_patience=1,
                      noise_augment=1.0, refit_output=False)
    data = _data()
    runs = [(0, 21), (1, 22)]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fused = train_fused(runs, net, cfg, data, tmp_path / "fused", torch.device("cpu"), progress=False)
        for (i, seed), got in zip(runs, fused):
            want = train_run(i, seed, net, cfg, data, None, torch.device("cpu"), progress=False)
            assert got.state.epoch == want.state.epoch and got.state.best_epoch == want.state.best_epoch
            np.testing.assert_allclose(got.state.train_loss, want.state.train_loss, rtol=1e-5)
            np.testing.assert_allclose(got.state.test_loss, want.state.test_loss, rtol=1e-5)
            for k in want.best:
                torch.testing.assert_close(got.best[k], want.best[k], rtol=1e-4, atol=1e-6)
    finally:
        torch.set_num_threads(saved)


def test_side_by_side_epoch_equals_batched_epoch():
    """The CPU formulation of a fused epoch (members side by side, each the single network's own
    operations, on threads) and the batched one (one FusedNetwork, GPU's) give the same losses and
    weights to float32 rounding when nothing random is shared (dropout 0), with 1 and 2 threads:
    the new CPU path's forward, gradients and Adam steps against the batched network's."""
    from starlabel.model.fused import FusedNetwork
    from starlabel.model.fused_train import StackedAdam, fused_epoch
    from starlabel.model.network import Network

    data = _data()
    torch.manual_seed(0)
    nets = [Network(NET) for _ in range(3)]
    out = {}
    for how in ("batched", "side1", "side2"):
        fused = FusedNetwork.from_networks(nets)
        opt = StackedAdam(fused.parameters(), torch.tensor([1e-3, 2e-3, 5e-4], dtype=torch.float64))
        gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        losses = [fused_epoch(fused, opt, data.x_train, data.y_train, 16, gens, noise=data.noise,
                              batched=how == "batched", threads=int(how[-1]) if how != "batched" else None)
                  for _ in range(2)]
        out[how] = (np.array(losses), fused.state_dicts(), opt.step_count.clone())
    for how in ("side1", "side2"):
        np.testing.assert_allclose(out[how][0], out["batched"][0], rtol=1e-5)
        assert torch.equal(out[how][2], out["batched"][2])
        for a, b in zip(out[how][1], out["batched"][1]):
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)  # 24 Adam steps, two arithmetics
