"""The CNN, its training loop and the model bundle (issue 3 §1–2)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from starlabel.model.config import NetworkConfig, preset
from starlabel.model.ensemble import BundleError, Ensemble
from starlabel.model.network import Network
from starlabel.stages.train import train
from toys import FAST, LABELS, TOY_GRID, make_sets, toy_spectra


@pytest.fixture
def sets(toy_sets):
    return toy_sets


@pytest.fixture
def bundle(toy_bundle):
    return toy_bundle


@pytest.mark.parametrize("cfg", [NetworkConfig(), NetworkConfig(n_pixels=601, filters=(3, 5), kernel=7, pool=3,
                                                                 dense=(16,), n_labels=2)])
def test_fast_forward_and_gradient_equal_plain_reference(cfg):
    torch.manual_seed(0)
    net = Network(cfg)
    for p in net.parameters():  # non-zero biases so their placement is tested too
        torch.nn.init.normal_(p, std=0.1)
    plain = net.plain()
    x = 1 + 0.05 * torch.randn(6, cfg.n_pixels)
    x[0, 100:140] = 1.0  # a constant stretch: ties inside pooling windows
    net.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(x), rtol=1e-5, atol=1e-5)
    gf = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    gp = torch.autograd.grad(plain(x).square().sum(), list(net.parameters()))
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg", [NetworkConfig(), NetworkConfig(n_pixels=601, filters=(3, 5), kernel=7, pool=3,
                                                                 dense=(16,), n_labels=2)])
def test_inference_path_equals_training_forward(cfg):
    """Eval without autograd takes `_forward_infer` (cached window matrices, in-place ops): the same
    numbers as the autograd forward, and the cache follows in-place weight updates — also the
    fused Adam step's, which does not bump the parameters' version counters."""
    torch.manual_seed(1)
    net = Network(cfg).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05, fused=True)
    x = 1 + 0.05 * torch.randn(5, cfg.n_pixels)
    for _ in range(3):
        out = net(x)  # grad enabled: the training forward
        ref = out.detach()
        with torch.inference_mode():
            torch.testing.assert_close(net(x), ref, rtol=1e-6, atol=1e-7)
        with torch.no_grad():
            torch.testing.assert_close(net(x), ref, rtol=1e-6, atol=1e-7)
        opt.zero_grad()
        out.square().sum().backward()
        opt.step()


@pytest.mark.slow
def test_compiled_first_block_matches_eager():
    """`compile_first_block` (torch.compile) gives the eager numbers to float rounding, on full
    batches only; if the compiler is unavailable it reports False and the eager path stays."""
    cfg = NetworkConfig(n_pixels=601, filters=(3, 5), kernel=7, pool=3, dense=(16,), n_labels=2)
    torch.manual_seed(2)
    net = Network(cfg).eval().requires_grad_(False)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = 1 + 0.05 * torch.randn(8, cfg.n_pixels)
    with torch.inference_mode():
        ref = net(x)
    ok = net.compile_first_block(4)
    assert ok == (net._first_block is not None)
    with torch.inference_mode():
        torch.testing.assert_close(torch.cat([net(x[:4]), net(x[4:]), net(x[5:])]),
                                   torch.cat([ref, ref[5:]]), rtol=1e-5, atol=1e-6)


def test_presets():
    assert preset("paper").network == NetworkConfig()
    assert preset("paper").train.batch_size == 64 and preset("paper").train.test_fraction == 0.4
    assert preset("quick", max_epochs=3).train.max_epochs == 3
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_training_lowers_test_loss_and_writes_bundle(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert {"manifest.json", "split.json", "history.json", "snapshots.safetensors"} <= names
    m = json.loads((bundle / "manifest.json").read_text())
    assert len(m["runs"]) == 3 and sum(r["kept"] for r in m["runs"]) == 2
    kept_losses = sorted(r["test_loss"] for r in m["runs"] if r["kept"])
    assert max(kept_losses) <= min(r["test_loss"] for r in m["runs"] if not r["kept"])
    assert all(f"run{i}.safetensors" in names for i in m["kept"])
    assert m["labels"]["names"] == list(LABELS) and m["data"]["n_train"] == 180 and m["data"]["n_test"] == 120
    assert set(m["versions"]) >= {"torch", "numpy", "starlabel"}
    hist = json.loads((bundle / "history.json").read_text())
    for h in hist.values():
        assert min(h["test_loss"]) < 0.7 * h["test_loss"][0]
    split = json.loads((bundle / "split.json").read_text())
    assert len(split["train"]) == 180 and not set(split["train"]) & set(split["test"])
    snaps = load_file(str(bundle / "snapshots.safetensors"))
    assert "epoch_1" in snaps and snaps["test_rows"].shape == (120,)
    assert snaps["epoch_1"].shape == (120, 3)


def test_save_load_predict_identical(bundle):
    flux, cat = toy_spectra(40, seed=5)
    a = Ensemble.load(bundle)
    b = Ensemble.load(bundle)
    pa, pb = a.predict(flux), b.predict(flux)
    mean, std = pa.mean, pa.std
    assert mean.shape == (40, 3) and np.array_equal(mean, pb.mean) and np.array_equal(std, pb.std)
    each = a.predict_each(flux)
    assert each.shape == (2, 40, 3)
    # worker threads share out the batches: the same numbers for any thread count
    assert np.array_equal(a.predict_each(flux, batch=8, threads=1), a.predict_each(flux, batch=8, threads=3))
    np.testing.assert_allclose(mean, each.mean(0))
    # physical units: Teff predictions in the right ballpark
    assert np.all((mean[:, 0] > 3000) & (mean[:, 0] < 8000))
    with pytest.raises(BundleError, match="pixels"):
        a.predict(flux[:, :-1])


def _copy(bundle, tmp_path):
    import shutil

    return shutil.copytree(bundle, tmp_path / "copy")


def test_tampered_weights_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    f = b / f"run{m['kept'][0]}.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        Ensemble.load(b)


def test_incomplete_bundle_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    (b / f"run{m['kept'][1]}.safetensors").unlink()
    with pytest.raises(BundleError, match=f"run{m['kept'][1]}.safetensors is missing"):
        Ensemble.load(b)
    (b / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Ensemble.load(b)
    with pytest.raises(BundleError, match="does not exist"):
        Ensemble.load(tmp_path / "nowhere")


def test_wrong_grid_refused(bundle):
    from starlabel.grid import Grid

    ens = Ensemble.load(bundle)
    ens.check_grid(TOY_GRID)
    with pytest.raises(BundleError, match="grid"):
        ens.check_grid(Grid.default())


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("noise_augment", [0.0, 1.0])
@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_models(sets, tmp_path, noise_augment):
    args = dict(runs=2, keep=1, seed=3, noise_augment=noise_augment, **FAST)
    whole = train(sets, tmp_path / "whole", **args)

    def stop(run, epoch, state):
        if run == 1 and epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(sets, tmp_path / "part", callback=stop, **args)
    assert not (tmp_path / "part" / "manifest.json").exists()
    epochs = []
    part = train(sets, tmp_path / "part", callback=lambda r, e, s: epochs.append((r, e)), **args)
    assert epochs[0] == (1, 3)  # run 0 was finished, run 1 continues after epoch 2
    for name in ("history.json", "split.json"):
        assert (whole / name).read_text() == (part / name).read_text()
    m = json.loads((whole / "manifest.json").read_text())
    k = m["kept"][0]
    wa, wb = load_file(str(whole / f"run{k}.safetensors")), load_file(str(part / f"run{k}.safetensors"))
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    # the same command on a finished training just rewrites the bundle
    train(sets, tmp_path / "part", callback=lambda *a: pytest.fail("retrained"), **args)


def test_resume_with_other_settings_refused(sets, tmp_path):
    train(sets, tmp_path / "m", runs=1, keep=1, **FAST)
    with pytest.raises(ValueError, match=r"different seed \(0 there, 9 now\)"):
        train(sets, tmp_path / "m", runs=1, keep=1, seed=9, **FAST)
    with pytest.raises(ValueError, match=r"different train.noise_augment \(1.0 there, 0.5 now\)"):
        train(sets, tmp_path / "m", runs=1, keep=1, noise_augment=0.5, **FAST)


def test_non_finite_training_rows_dropped(tmp_path, caplog):
    sets = make_sets(tmp_path / "S.h5", n=120, nan_rows=(3, 7))
    fast = dict(FAST, max_epochs=1)
    with caplog.at_level("INFO", logger="starlabel"):
        out = train(sets, tmp_path / "m", runs=1, keep=1, **fast)
    assert "dropped 2 of 120" in caplog.text
    split = json.loads((out / "split.json").read_text())
    assert "TOY00003" not in split["train"] + split["test"]


def test_label_weights_follow_catalogue_errors(caplog):
    from astropy.table import Table

    from starlabel.model.run import loss_fn
    from starlabel.stages.train import label_weights

    t = Table({"E_TEFF": [10.0, 20.0, np.nan, 0.0]})
    with caplog.at_level("INFO", logger="starlabel"):
        w = label_weights(t, ("TEFF", "LOGG"))
    # 1/E² = 0.01, 0.0025; missing or zero errors get the median (0.00625); mean 1 per label
    np.testing.assert_allclose(w[:, 0], [1.6, 0.4, 1.0, 1.0])
    np.testing.assert_array_equal(w[:, 1], 1.0)
    assert "E_LOGG" in caplog.text
    pred, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert loss_fn(pred, y).item() == pytest.approx(2.5)
    assert loss_fn(pred, y, torch.tensor([[2.0, 0.5]])).item() == pytest.approx((2 * 1 + 0.5 * 4) / 2)


@pytest.mark.slow
def test_weighted_training_down_weights_noisy_labels(tmp_path):
    """Half the stars carry labels with 10× the error (and say so in E_FE_H): weighting by 1/E²
    lets the precise half set the fit, so the network lands closer to the true labels."""
    from starlabel.io.dataset import write_dataset

    flux, cat = toy_spectra(300, seed=5)
    truth = np.asarray(cat["FE_H"]).copy()
    rng = np.random.default_rng(6)
    err = np.where(np.arange(300) % 2 == 0, 0.02, 0.4)
    cat["FE_H"] = truth + rng.normal(size=300) * err
    cat["E_FE_H"] = err
    cat["SET"] = "train"
    sets = write_dataset(tmp_path / "S.h5", TOY_GRID, flux, np.zeros(flux.shape, "u1"), cat)
    fast = dict(FAST, labels=("FE_H",), max_epochs=25, patience=25)
    scatter = {}
    for weighted in (False, True):
        out = train(sets, tmp_path / f"m{weighted}", runs=1, keep=1, seed=2, weight_by_errors=weighted, **fast)
        assert json.loads((out / "manifest.json").read_text())["train"]["weight_by_errors"] is weighted
        mean = Ensemble.load(out).predict(flux).mean
        scatter[weighted] = float(np.std(mean[:, 0] - truth))
    assert scatter[True] < 0.8 * scatter[False], scatter


def test_training_from_before_a_new_setting_still_resumes(sets, tmp_path, caplog):
    """A checkpoint directory written before a TrainConfig field existed resumes: the missing
    field means its default, which is the behaviour that training had."""
    train(sets, tmp_path / "m", runs=1, keep=1, **FAST)
    path = tmp_path / "m" / "checkpoints" / "settings.json"
    settings = json.loads(path.read_text())
    del settings["train"]["weight_by_errors"]
    path.write_text(json.dumps(settings))
    with caplog.at_level("INFO", logger="starlabel"):
        train(sets, tmp_path / "m", runs=1, keep=1, **FAST)
    assert "resuming" in caplog.text


def test_noise_augment_adds_each_spectrums_own_noise():
    """The added noise is `factor` × the spectrum's DER_SNR noise in each setup, and the same
    generator state draws the same noise (so a resumed run continues identically)."""
    from starlabel.model.run import NoiseAugment

    rng = np.random.default_rng(0)
    n, slices = 40, list(TOY_GRID.slices().values())
    sigma = rng.uniform(0.005, 0.05, (n, 2))
    flux = np.ones((n, TOY_GRID.n_pixels), "f4")
    for j, s in enumerate(slices):
        flux[:, s] += (rng.normal(size=(n, s.stop - s.start)) * sigma[:, j : j + 1]).astype("f4")
    aug = NoiseAugment(flux, slices, 0.5, torch.device("cpu"))
    x, idx = torch.as_tensor(flux), torch.arange(n)
    added = (aug(x, idx, torch.Generator().manual_seed(1)) - x).numpy()
    for j, s in enumerate(slices):  # 301 pixels a setup: a few per cent sampling error in each
        ratio = added[:, s].std(1) / sigma[:, j]
        assert abs(np.median(ratio) - 0.5) < 0.03 and ratio.min() > 0.35 and ratio.max() < 0.65, ratio
    again = (aug(x, idx, torch.Generator().manual_seed(1)) - x).numpy()
    np.testing.assert_array_equal(added, again)


@pytest.mark.slow
def test_mask_setups_fills_one_setup_with_exactly_one():
    """Missing-setup augmentation: about the asked share of spectra lose one setup, replaced by exactly
    1.0 (what prepare writes for a missing setup, no noise on it), the other setup keeps its noise, the
    draws repeat with the generator, and the data the batch came from is not changed."""
    from starlabel.model.run import NoiseAugment

    n, slices = 2000, list(TOY_GRID.slices().values())
    flux = np.ones((n, TOY_GRID.n_pixels), "f4") + np.random.default_rng(1).normal(0, 0.01, (n, TOY_GRID.n_pixels)).astype("f4")
    x = torch.as_tensor(flux)
    aug = NoiseAugment(flux, slices, 1.0, torch.device("cpu"), mask_setups=0.2)
    out = aug(x[torch.arange(n)], torch.arange(n), torch.Generator().manual_seed(3))
    filled = np.array([[bool((out[:, s] == 1.0).all(1)[i]) for s in slices] for i in range(n)])
    assert not filled.all(1).any()  # never both setups
    share = filled.any(1).mean()
    assert 0.17 < share < 0.23, share
    assert 0.4 < filled[:, 0].sum() / max(filled.any(1).sum(), 1) < 0.6  # either setup, evenly
    kept = ~filled.any(1)
    assert (out[kept] != x[kept]).any(1).all()  # the others got their fresh noise
    again = aug(x[torch.arange(n)], torch.arange(n), torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    assert torch.equal(x, torch.as_tensor(flux))
    with pytest.raises(ValueError, match="mask-setups"):
        preset("quick", mask_setups=1.0)


def test_output_layer_refit_undoes_dropout_shrinkage(sets, tmp_path):
    """Dropout on the output layer's inputs shrinks the labels towards their mean; the ridge
    refit on the eval-mode features lowers the test loss, the bundle holds the refitted layer,
    and the manifest records the loss before and after."""
    out = train(sets, tmp_path / "m", runs=1, keep=1, seed=4, **dict(FAST, refit_output=True, max_epochs=6))
    run = json.loads((out / "manifest.json").read_text())["runs"][0]
    assert run["test_loss"] < run["test_before_refit"]
    assert len(run["refit_alpha"]) == len(LABELS)
    ens = Ensemble.load(out)
    split = json.loads((out / "split.json").read_text())
    from starlabel.io.tables import index_of
    from starlabel.io.dataset import Dataset

    ds = Dataset(sets)
    rows = index_of(np.array(split["test"]), np.asarray(ds.catalogue["CNAME"]).astype(str))
    mean = ens.predict(ds.read(rows)).mean
    y = np.column_stack([np.asarray(ds.catalogue[n], float)[rows] for n in LABELS])
    loss = np.mean((ens.labels.to_network(mean) - ens.labels.to_network(y)) ** 2)
    assert loss == pytest.approx(run["test_loss"], rel=1e-4)
