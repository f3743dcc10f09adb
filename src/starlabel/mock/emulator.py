"""A Payne-style emulator of the PySME grid: labels → normalised, unbroadened flux (Ting et al. 2019).

    python -m starlabel.mock.emulator --grid /work/cache/pysme_grid --out src/starlabel/data/pysme_emulator.safetensors

A small MLP (7 labels scaled to [−0.5, 0.5] → SiLU → SiLU → one output per pixel, times the
training set's per-pixel standard deviation plus its mean spectrum; MSE loss on the standardised flux
rather than the Payne's L1, which drowned the few varying pixels in the noise of the flat ones) on coarser native grids than the cache (HR10 5340–5610 Å at 0.03 Å,
HR21 8470–8940 Å at 0.05 Å, air; flux-conservingly rebinned, still well below GIRAFFE's 0.27 / 0.53 Å
FWHM), so that the weights stay small enough to ship. Trained full-batch with Adam;
a random 15 % of the grid points is held out and never trained on. Weights go to a safetensors file
whose metadata holds the provenance: grid directory and settings (line-list sha256), number of
points, held-out metrics (median |Δflux| over all pixels and at the paper's Mg I / Al I lines), date
and this command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path

log = logging.getLogger(__name__)

# one pixel inside the cache's native grids at each end, so that every bin is fully covered
EMU_GRID = {"HR10": (5340.03, 5609.97, 0.03), "HR21": (8470.05, 8939.95, 0.05)}
LABELS = ("teff", "logg", "feh", "mg_fe", "al_fe", "alpha_fe", "vmic")
PAPER_LINES = {"Mg I 5528.41": 5528.41, "Mg I 8717.81": 8717.81, "Mg I 8736.02": 8736.02, "Mg I 8806.756": 8806.756,
               "Al I 5557.06": 5557.06, "Al I 8772.87": 8772.87, "Al I 8773.90": 8773.90}


def emu_wavelength(setup: str) -> np.ndarray:
    lo, hi, st = EMU_GRID[setup]
    return lo + st * np.arange(int(round((hi - lo) / st)) + 1)


def load_cache(directory: str | Path, settings_sha: str | None = None):
    """(labels (N, 7), flux (N, P) on the emulator grid, settings dict) from a pysme_grid cache.

    Only files whose settings match the first file's (or `settings_sha`, the line-list hash) are used.
    """
    from ..grid import resample
    from .pysme_engine import native_wavelength
    from .pysme_grid import read_point

    files = sorted(Path(directory).glob("*.npz"))
    labs, fluxes, settings = [], [], None
    for f in files:
        try:
            meta, flux = read_point(f)
        except Exception as e:  # a damaged file never stops training
            log.warning("%s unreadable, skipped: %s", f, e)
            continue
        s = meta["settings"]
        if settings is None and (settings_sha is None or s.get("linelist_sha256") == settings_sha):
            settings = s
        if s != settings:
            continue
        row = []
        for setup in EMU_GRID:
            w = native_wavelength(setup)
            row.append(resample(w, flux[setup].astype(float), emu_wavelength(setup))[0])
        labs.append([meta["labels"][k] for k in LABELS])
        fluxes.append(np.concatenate(row))
    if not labs:
        raise FileNotFoundError(f"no usable grid points in {directory}")
    return np.array(labs, float), np.array(fluxes, np.float32), settings


def _bounds():
    from .pysme_grid import BOUNDS

    lo = np.array([BOUNDS[k][0] for k in LABELS])
    hi = np.array([BOUNDS[k][1] for k in LABELS])
    return lo, hi


def make_network(n_pixels: int, hidden: int = 64):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(len(LABELS), hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, n_pixels))


class Emulator:
    """labels → {setup: (wave, flux)}; load with `Emulator.load(path)` (default: the shipped file)."""

    def __init__(self, net, mean, scale, lo, hi, provenance: dict):
        self.net, self.mean, self.pix_scale, self.lo, self.hi = net.eval(), mean, scale, lo, hi
        self.provenance = provenance
        self.slices, i = {}, 0
        for s in EMU_GRID:
            n = emu_wavelength(s).size
            self.slices[s] = slice(i, i + n)
            i += n

    def scale(self, labels: np.ndarray) -> np.ndarray:
        return (np.asarray(labels, float) - self.lo) / (self.hi - self.lo) - 0.5

    def flux(self, labels) -> np.ndarray:
        """(N, P) concatenated flux for an (N, 7) label array (order: LABELS)."""
        import torch

        x = torch.as_tensor(self.scale(np.atleast_2d(labels)), dtype=torch.float32)
        with torch.no_grad():
            return self.net(x).numpy() * self.pix_scale + self.mean

    def spectrum(self, labels: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        f = self.flux([[labels[k] for k in LABELS]])[0]
        return {s: (emu_wavelength(s), f[sl]) for s, sl in self.slices.items()}

    def save(self, path: str | Path) -> None:
        import torch
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        tensors["mean"] = torch.as_tensor(self.mean)
        tensors["pixel_scale"] = torch.as_tensor(self.pix_scale)
        tensors["label_lo"] = torch.as_tensor(self.lo)
        tensors["label_hi"] = torch.as_tensor(self.hi)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"provenance": json.dumps(self.provenance, default=str)})

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Emulator":
        from importlib import resources

        from safetensors import safe_open
        from safetensors.torch import load_file

        path = path or Path(str(resources.files("starlabel") / "data" / "pysme_emulator.safetensors"))
        with safe_open(str(path), "pt") as fh:
            prov = json.loads(fh.metadata()["provenance"])
        t = load_file(str(path))
        net = make_network(t["mean"].numel(), prov["hidden"])
        net.load_state_dict({k: v for k, v in t.items() if k[0].isdigit()})
        return cls(net, t["mean"].numpy(), t["pixel_scale"].numpy(), t["label_lo"].numpy().astype(float), t["label_hi"].numpy().astype(float), prov)


def line_pixels() -> dict[str, int]:
    """Index in the concatenated emulator vector of the pixel nearest each paper line."""
    out, off = {}, 0
    for s in EMU_GRID:
        w = emu_wavelength(s)
        for name, lam in PAPER_LINES.items():
            if w[0] <= lam <= w[-1]:
                out[name] = off + int(np.argmin(np.abs(w - lam)))
        off += w.size
    return out


def metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Median |Δflux| over all pixels and at the paper's lines (median over spectra of the line pixel)."""
    d = np.abs(pred - truth)
    out = {"median_abs_dflux": float(np.median(d)), "p95_abs_dflux": float(np.percentile(d, 95))}
    out["lines"] = {k: float(np.median(d[:, i])) for k, i in line_pixels().items()}
    return out


def train(labels: np.ndarray, flux: np.ndarray, hidden: int = 64, epochs: int = 5000, lr: float = 3e-3,
          held_out: float = 0.15, seed: int = 0, threads: int = 1):
    """(Emulator, {'held_out': metrics, 'train': metrics, 'n_train', 'n_held_out'}). One torch thread by
    default: the grid usually keeps growing on the other cores of a shared machine."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    n = len(labels)
    n_test = max(1, int(round(held_out * n))) if n >= 4 and held_out > 0 else 0
    perm = rng.permutation(n)
    test, tr = perm[:n_test], perm[n_test:]
    lo, hi = _bounds()
    mean = flux[tr].mean(0)
    # per-pixel standardisation: the few pixels that vary (lines) carry the loss, not the flat continuum
    scale = np.maximum(flux[tr].std(0), 1e-3)
    emu = Emulator(make_network(flux.shape[1], hidden), mean.astype(np.float32), scale.astype(np.float32), lo, hi, {})
    x = torch.as_tensor(emu.scale(labels[tr]), dtype=torch.float32)
    y = torch.as_tensor((flux[tr] - mean) / scale, dtype=torch.float32)
    emu.net.train()
    opt = torch.optim.Adam(emu.net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(emu.net(x), y)
        loss.backward()
        opt.step()
        sched.step()
        if epoch % 1000 == 0:
            log.info("epoch %d: train MSE %.3g", epoch, loss.item())
    emu.net.eval()
    report = {"n_train": int(tr.size), "n_held_out": int(test.size),
              "train": metrics(emu.flux(labels[tr]), flux[tr]), "final_train_mse": loss.item()}
    if test.size:
        report["held_out"] = metrics(emu.flux(labels[test]), flux[test])
        report["held_out_mean_spectrum_baseline"] = metrics(np.broadcast_to(mean, flux[test].shape), flux[test])
    return emu, report


def cross_validate(labels: np.ndarray, flux: np.ndarray, k: int = 5, seed: int = 0, **kw) -> dict:
    """k-fold held-out metrics: every grid point is predicted once by a network that never saw it
    (beside the same figure for the training folds' mean spectrum, the trivial baseline)."""
    rng = np.random.default_rng([seed, 7])
    folds = np.array_split(rng.permutation(len(labels)), k)
    pred = np.empty_like(flux)
    base = np.empty_like(flux)
    for f in folds:
        tr = np.setdiff1d(np.arange(len(labels)), f)
        emu, _ = train(labels[tr], flux[tr], held_out=0.0, seed=seed, **kw)
        pred[f] = emu.flux(labels[f])
        base[f] = flux[tr].mean(0)
    return {"k": k, "n": int(len(labels)), "held_out": metrics(pred, flux),
            "held_out_mean_spectrum_baseline": metrics(base, flux)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m starlabel.mock.emulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="pysme_grid cache directory")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--cv", type=int, default=0, help="k-fold cross-validation for the held-out figures; the shipped "
                                                       "network is then trained on every point (default: a 15 %% hold-out)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    t = time.time()
    labels, flux, settings = load_cache(a.grid)
    log.info("%d grid points, %d pixels (read in %.0f s)", len(labels), flux.shape[1], time.time() - t)
    if not np.isfinite(flux).all():
        raise ValueError("non-finite flux in the grid cache")
    if a.cv:
        cv = cross_validate(labels, flux, a.cv, seed=a.seed, hidden=a.hidden, epochs=a.epochs, threads=a.threads)
        emu, report = train(labels, flux, a.hidden, a.epochs, held_out=0.0, seed=a.seed, threads=a.threads)
        report["cross_validation"] = cv
    else:
        emu, report = train(labels, flux, a.hidden, a.epochs, seed=a.seed, threads=a.threads)
    emu.provenance = {"what": "Payne-style emulator of PySME spectra (starlabel.mock.emulator)",
                      "hidden": a.hidden, "epochs": a.epochs, "seed": a.seed, "labels": LABELS,
                      "emulator_grid": EMU_GRID, "grid_dir": str(a.grid), "grid_points": int(len(labels)),
                      "grid_settings": settings, "report": report,
                      "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "train_seconds": round(time.time() - t, 1),
                      "command": "python -m starlabel.mock.emulator " + " ".join(sys.argv[1:] if argv is None else argv)}
    emu.save(a.out)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
