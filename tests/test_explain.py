"""Gradient maps: autograd against finite differences, the peak finder, line matching, the stage."""

import json
import sys
import types

import numpy as np
import pytest
import torch
from astropy.table import Table

from starlabel.stages.explain import (GradientMaps, find_gradient_peaks, gradient_correlation, gradient_maps,
                               identify_lines, label_element, match_lines)
from starlabel.model.network import per_spectrum_gradients
from toys import write_manifest
from starlabel.grid import Grid, Setup
from starlabel.labels import LabelSet

GRID = Grid((Setup("HR21", 8700.0, 8820.0, 0.1), Setup("B", 5500.0, 5560.0, 0.06)))


class TinyNet(torch.nn.Module):
    """A small CNN of the same shape as the real one: conv → pool → dense → labels."""

    def __init__(self, n_pixels, n_labels, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv1d(1, 3, 5, padding=2)
        self.pool = torch.nn.MaxPool1d(4)
        self.dense = torch.nn.Linear(3 * (n_pixels // 4), n_labels)

    def forward(self, x):
        h = torch.tanh(self.conv(x[:, None, :]))
        return self.dense(self.pool(h).flatten(1))


def test_gradients_match_finite_differences():
    p, n_lab = 40, 3
    net = TinyNet(p, n_lab).double().eval()
    rng = np.random.default_rng(1)
    flux = 1 + 0.1 * rng.standard_normal((2, p))
    scale = np.array([100.0, 0.5, 2.0])
    g = per_spectrum_gradients(net, flux, scale)
    assert g.shape == (2, n_lab, p)
    eps = 1e-6
    for i in range(2):
        for px in (0, 7, 23, 39):
            up, dn = flux.copy(), flux.copy()
            up[i, px] += eps
            dn[i, px] -= eps
            with torch.no_grad():
                fd = (net(torch.tensor(up)) - net(torch.tensor(dn))).numpy()[i] / (2 * eps)
            np.testing.assert_allclose(g[i, :, px], fd * scale, rtol=1e-5, atol=1e-9)


def test_ensemble_maps_average_the_models():
    p = GRID.n_pixels
    nets = [TinyNet(p, 2, seed=s) for s in (0, 1)]
    labels = LabelSet(("MG_FE", "AL_FE"), (0.0, 0.0), (0.1, 0.2))
    flux = 1 + 0.05 * np.random.default_rng(0).standard_normal((10, p)).astype(np.float32)
    maps = gradient_maps(nets, labels, [flux[:6], flux[6:]], GRID.wavelength, GRID, progress=False)
    assert maps.n_spectra == 10 and maps.signed.shape == (2, 2, p)
    np.testing.assert_allclose(maps.ensemble_signed, maps.signed.mean(0), rtol=1e-4, atol=1e-7)
    assert np.all(maps.absolute >= np.abs(maps.signed) - 1e-7)
    np.testing.assert_allclose(maps.mean_flux, flux.mean(0), rtol=1e-6)


def _planted_signal(rng, centres, heights, sigma_a=0.08):
    w = GRID.wavelength
    s = np.abs(0.02 * rng.standard_normal(len(w)))
    for c, h in zip(centres, heights):
        s += h * np.exp(-0.5 * ((w - c) / sigma_a) ** 2)
    # a broad bump (continuum-like) that must not count as a line
    s += 1.5 * np.exp(-0.5 * ((w - 8760.0) / 3.0) ** 2)
    return w, s


def test_peak_finder_recovers_planted_peaks():
    rng = np.random.default_rng(3)
    centres, heights = [8717.8, 8736.0, 8806.8, 5528.4], [1.0, 0.8, 0.6, 0.5]
    w, s = _planted_signal(rng, centres, heights)
    peaks = find_gradient_peaks(w, s, GRID, n_peaks=4, max_width=1.0)
    assert len(peaks) == 4
    found = np.sort(peaks["peak_wavelength"])
    np.testing.assert_allclose(found, np.sort(centres), atol=0.11)
    # strongest first
    assert abs(peaks["peak_wavelength"][0] - 8717.8) < 0.11
    assert not np.any(np.abs(peaks["peak_wavelength"] - 8760.0) < 2.0)


def test_match_prefers_the_labels_element():
    lines = Table({"SPECIES": ["Fe I", "Mg I", "Si I"], "ELEMENT": ["Fe", "Mg", "Si"], "ION": [1, 1, 1],
                   "WAVELENGTH": [8736.1, 8736.02, 8790.0]})
    (sp, lw, off), = match_lines([8736.1], lines, "Mg", tolerance=0.5)
    assert sp == "Mg I" and lw == pytest.approx(8736.02) and off == pytest.approx(0.08)
    (sp, lw, off), = match_lines([8736.1], lines, None, tolerance=0.5)
    assert sp == "Fe I"
    (sp, lw, off), = match_lines([8800.0], lines, "Mg", tolerance=0.5)
    assert sp == "" and np.isnan(lw)
    assert label_element("MG_FE") == "Mg" and label_element("AL1") == "Al" and label_element("FE_H") == "Fe"
    assert label_element("TEFF") is None and label_element("LOGG") is None


def _maps_with_planted_peaks():
    rng = np.random.default_rng(5)
    _, s_mg = _planted_signal(rng, [8736.0, 8806.8], [1.0, 0.7])
    _, s_al = _planted_signal(rng, [8773.9], [1.0])
    ens_abs = np.stack([s_mg, s_al])
    return GradientMaps(GRID.wavelength, ("MG_FE", "AL_FE"), -ens_abs[None], ens_abs[None], -ens_abs, ens_abs,
                        np.ones(GRID.n_pixels), 5, GRID)


def test_identify_lines_and_save_load(tmp_path):
    maps = _maps_with_planted_peaks()
    lines = Table({"SPECIES": ["Mg I", "Mg I", "Al I", "Al I"], "ELEMENT": ["Mg", "Mg", "Al", "Al"],
                   "ION": [1] * 4, "WAVELENGTH": [8736.02, 8806.756, 8772.87, 8773.90]})
    maps.lines = identify_lines(maps, lines, n_peaks=3)
    mg = maps.lines[maps.lines["label"] == "MG_FE"]
    assert list(mg["species"][:2]) == ["Mg I", "Mg I"] and np.all(np.abs(mg["offset"][:2]) < 0.5)
    al = maps.lines[maps.lines["label"] == "AL_FE"]
    assert al["species"][0] == "Al I" and abs(al["line_wavelength"][0] - 8773.90) < 1e-6
    assert al["signed"][0] < 0
    from starlabel.stages.explain import expected_line_check

    check = expected_line_check(maps.lines)
    assert list(check["label"]) == ["MG_FE", "MG_FE", "AL_FE"] and np.all(check["ok"])
    maps.save(tmp_path / "e.h5")
    back = GradientMaps.load(tmp_path / "e.h5")
    assert back.labels == maps.labels and back.grid == GRID and len(back.lines) == len(maps.lines)
    np.testing.assert_allclose(back.ensemble_absolute, maps.ensemble_absolute, rtol=1e-6)


def test_gradient_correlation():
    maps = _maps_with_planted_peaks()
    w = GRID.wavelength
    for k, c in enumerate((8736.0, 8773.9)):  # peaks at different lines: uncorrelated maps
        maps.ensemble_signed[k] = -np.exp(-0.5 * ((w - c) / 0.08) ** 2)
    t = gradient_correlation(maps, "relative")
    assert len(t) == 1 and -1 <= t["correlation"][0] < 0.9
    maps.ensemble_signed[1] = 2 * maps.ensemble_signed[0]
    assert gradient_correlation(maps)["correlation"][0] == pytest.approx(1.0)


def test_figures_write_png(tmp_path):
    from starlabel.plots.gradients import correlated_gradients_figure, gradient_figure

    maps = _maps_with_planted_peaks()
    assert gradient_figure(maps, tmp_path / "g.png").stat().st_size > 1000
    out = correlated_gradients_figure({"absolute": maps, "relative": maps}, tmp_path / "c.png")
    assert out.stat().st_size > 1000


@pytest.fixture
def fake_bundle(tmp_path, monkeypatch):
    """SETS.h5 + a model dir with split.json, and a stand-in for starlabel.model.ensemble.Ensemble."""
    from starlabel.io.dataset import write_dataset

    n, p = 30, GRID.n_pixels
    rng = np.random.default_rng(0)
    cat = Table({"CNAME": [f"S{i:03d}" for i in range(n)], "SET": ["train"] * 20 + ["observed"] * 10})
    flux = (1 + 0.05 * rng.standard_normal((n, p))).astype(np.float32)
    write_dataset(tmp_path / "sets.h5", GRID, flux, np.zeros((n, p), np.uint8), cat)
    model = tmp_path / "model"
    model.mkdir()
    (model / "split.json").write_text(json.dumps({"train": list(cat["CNAME"][:12]), "test": list(cat["CNAME"][12:20])}))
    write_manifest(model, ("MG_FE", "AL_FE"), GRID)

    class FakeEnsemble:
        def __init__(self):
            self.networks = [TinyNet(p, 2, seed=s).eval() for s in (0, 1)]
            self.labels = LabelSet(("MG_FE", "AL_FE"), (0.0, 0.0), (0.1, 0.2))
            self.grid = GRID
            self.excluded = None

        @classmethod
        def load(cls, path):
            return cls()

    mod = types.ModuleType("starlabel.model.ensemble")
    mod.Ensemble = FakeEnsemble
    pkg = types.ModuleType("starlabel.model")
    pkg.__path__ = []
    monkeypatch.setitem(sys.modules, "starlabel.model", sys.modules.get("starlabel.model", pkg))
    monkeypatch.setitem(sys.modules, "starlabel.model.ensemble", mod)
    return tmp_path / "sets.h5", model


def test_explain_stage(fake_bundle, tmp_path):
    from starlabel.stages.explain import explain

    sets, model = fake_bundle
    lines = Table({"SPECIES": ["Mg I"], "ELEMENT": ["Mg"], "ION": [1], "WAVELENGTH": [8736.02]})
    maps = explain(model, sets, tmp_path / "out" / "explain.h5", which="test", linelist=lines, progress=False)
    assert maps.n_spectra == 8
    for name in ("explain.h5", "lines.csv", "line_check.csv", "gradients.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    csv = Table.read(tmp_path / "out" / "lines.csv", format="ascii.csv")
    assert csv.colnames == ["label", "peak_wavelength", "strength", "species", "line_wavelength", "offset"]
    assert explain(model, sets, tmp_path / "o2.h5", which="all", n_max=5, linelist=lines, figure=False,
                   progress=False).n_spectra == 5


def test_label_correlation_experiment(fake_bundle, tmp_path):
    from starlabel.stages.explain import label_correlation_experiment

    sets, model = fake_bundle
    t = label_correlation_experiment(model, model, sets, tmp_path / "corr", n_max=4, progress=False)
    assert list(t["case"]) == ["absolute", "relative"]
    assert t["correlation"][0] == pytest.approx(t["correlation"][1])  # same bundle, same spectra
    for name in ("correlation.csv", "correlation.txt", "gradients_correlated.png", "absolute/explain.h5"):
        assert (tmp_path / "corr" / name).stat().st_size > 0


def test_real_network_input_gradients_match_plain_layers():
    """The fast Network has a hand-written backward; its ∂output/∂flux must equal that of the
    textbook layer stack with the same weights (and finite differences)."""
    network = pytest.importorskip("starlabel.model.network")
    from starlabel.model.config import NetworkConfig

    torch.manual_seed(0)
    cfg = NetworkConfig(n_pixels=300, n_labels=3, filters=(2, 4, 4), kernel=5, pool=4, dense=(16, 8, 8))
    net = network.Network(cfg).double().eval()
    flux = 1 + 0.1 * np.random.default_rng(2).standard_normal((3, 300))
    fast = per_spectrum_gradients(net, flux)
    plain = per_spectrum_gradients(net.plain().eval(), flux)
    np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-12)
    eps, px = 1e-6, 123
    up, dn = flux.copy(), flux.copy()
    up[:, px] += eps
    dn[:, px] -= eps
    with torch.no_grad():
        fd = (net(torch.tensor(up)) - net(torch.tensor(dn))).numpy() / (2 * eps)
    np.testing.assert_allclose(fast[:, :, px], fd, rtol=1e-5, atol=1e-9)
