"""The ensemble estimator: the kept networks with their labels, grid and provenance.

Array in, array out, like a scikit-learn model or openTSNE's `TSNE().fit(X)`:

    ens = Ensemble.fit(flux, labels, names=("TEFF", "LOGG", "FE_H"), grid=grid, config="quick")
    result = ens.predict(flux, noise_draws=4)    # .mean .std .noise .total, .to_table()
    ens.save("model/"); ens = Ensemble.load("model/")

The bundle format on disk is `bundle.py`'s; the training loop is `train.py`'s.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from ..exclusion import blanked, from_runs, to_runs
from ..grid import Grid
from ..labels import DEFAULT_LABELS, LabelSet, label_matrix
from .bundle import CALIBRATION, Bundle, BundleError, write_bundle
from .config import Preset, preset as get_preset
from .network import Network, per_spectrum_gradients
from .train import TrainingRecord, fit_runs, pick_device

__all__ = ["Ensemble", "Prediction", "BundleError"]

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """Labels of N spectra, each (N, L) in physical units.

    `mean`, `std`: ensemble mean and standard deviation (ddof=0) over the kept networks;
    `noise`: how far the labels move when noise of the spectrum's own level is added (None
    unless `noise_draws` > 0); `model`: (L,) the model-error term of a calibrated bundle
    (`starlabel calibrate`; None without); `total`: all three in quadrature, the error bar to use
    (it needs the noise draws the calibration assumed: without them it is the spread alone)."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    noise: np.ndarray | None = None
    model: np.ndarray | None = None

    @property
    def total(self) -> np.ndarray:
        if self.noise is None:
            return self.std
        model = 0.0 if self.model is None else np.asarray(self.model, float)
        return np.sqrt(self.std**2 + self.noise**2 + model**2)

    def to_table(self, ids=None) -> Table:
        """`<LABEL>_CNN`, `E_<LABEL>_CNN` (and `E_<LABEL>_NOISE`, `E_<LABEL>_MODEL`, `E_<LABEL>_TOTAL`),
        after a CNAME column when `ids` are given: the columns of `starlabel predict`'s output."""
        table = Table()
        if ids is not None:
            table["CNAME"] = np.asarray(ids).astype(str)
        total = self.total
        for j, n in enumerate(self.names):
            table[f"{n}_CNN"] = self.mean[:, j]
            table[f"E_{n}_CNN"] = self.std[:, j]
            if self.noise is not None:
                table[f"E_{n}_NOISE"] = self.noise[:, j]
            if self.model is not None:
                table[f"E_{n}_MODEL"] = np.full(len(self.mean), self.model[j])
            if self.noise is not None:
                table[f"E_{n}_TOTAL"] = total[:, j]
        return table


class Ensemble:
    """The kept networks of a trained ensemble. `predict(flux)` → `Prediction` in physical units."""

    def __init__(self, networks: list[Network], labels: LabelSet, grid: Grid, manifest: dict | None = None,
                 path: Path | None = None, device=None, record: TrainingRecord | None = None,
                 excluded: np.ndarray | None = None):
        self.networks = networks
        self.labels = labels
        self.grid = grid
        self.manifest = manifest or {}
        if excluded is None and "excluded_pixels" in self.manifest:
            excluded = from_runs(self.manifest["excluded_pixels"]["runs"], grid.n_pixels)
        # pixels set to 1.0 in every spectrum before the networks see it (starlabel.exclusion); None: none
        self.excluded = excluded if excluded is not None and excluded.any() else None
        self.path = path
        self.record = record  # set by `fit`: what `save` writes besides the weights
        self.device = torch.device(device) if device is not None else next(networks[0].parameters()).device
        self.precision = "fp32"  # or "bf16" / "fp16": see precision.choose, which measures it first
        self.model_error = None  # (L,) σ_model of a calibrated bundle (Bundle.calibration), else None

    def inference(self):
        """The context every forward pass runs in: inference mode, autocast to `self.precision`."""
        from .precision import context

        return context(self.device, self.precision)

    # ------------------------------------------------------------------ training

    @classmethod
    def fit(cls, flux, labels, names=DEFAULT_LABELS, grid: Grid | None = None, config: str | Preset = "quick",
            runs: int | None = None, keep: int | None = None, seed: int = 0, ids=None, weights=None,
            checkpoint_dir=None, callback=None, device=None, progress: bool = False,
            fused: bool = False, client=None, threads: int | None = None, exclude=None) -> "Ensemble":
        """Train `runs` networks on (flux (N, P), labels (N, L) or a table with the `names` columns)
        and keep the `keep` best. A missing label (NaN) is left out of the loss: the star trains on its others.

        `config`: a preset name ("quick", "paper") or a `Preset`; `runs`/`keep` override its values.
        `grid`: the wavelength grid of the flux columns (default: the paper's HR10+HR21 grid).
        `ids`: one name per spectrum (CNAMEs), recorded in the bundle's split. `weights` (N, L):
        per-star, per-label loss weights. With `checkpoint_dir` an interrupted fit resumes
        there; `callback(run, epoch, state)` is called after every epoch. `fused`: train the runs together
        as one fused network (needs `checkpoint_dir`). `client`: a dask.distributed Client that trains
        each run as one task on its workers (`train.fit_runs`). `exclude`: boolean mask of the pixels the
        networks must not read (`starlabel.exclusion`): 1.0 there in training, and in every spectrum the
        ensemble labels later (the bundle records it)."""
        if hasattr(labels, "colnames"):  # a table with one column per label name
            labels = label_matrix(labels, names)
        if exclude is not None:
            exclude = np.asarray(exclude, bool)
            if exclude.shape != (np.shape(flux)[1],):
                raise ValueError(f"exclude has shape {exclude.shape}, the flux {np.shape(flux)[1]} pixels")
            if exclude.any():
                flux = blanked(flux, exclude)
        p = get_preset(config) if isinstance(config, str) else config
        if runs is not None or keep is not None:
            p = replace(p, runs=p.runs if runs is None else runs, keep=p.keep if keep is None else keep)
        rec = fit_runs(flux, labels, names, grid or Grid.default(), p, seed, ids, weights, checkpoint_dir,
                       callback, device, progress, fused, client=client, threads=threads)
        networks = []
        for i in rec.kept:
            net = Network(rec.network)
            net.load_state_dict(rec.results[i].best)
            networks.append(net.to(rec.device).eval().requires_grad_(False))
        return cls(networks, rec.labels, rec.grid, device=rec.device, record=rec, excluded=exclude)

    def save(self, path, test_rows=None, provenance: dict | None = None) -> Path:
        """Write the bundle directory of a freshly fitted ensemble (bundle.py). `test_rows`: the
        dataset rows of the test spectra (default: their positions in the fitted arrays);
        `provenance`: extra entries for the manifest's `data` record."""
        rec = self.record
        if rec is None:
            raise BundleError("this ensemble was loaded, not fitted: its bundle is already on disk "
                              f"({self.path}); copy that directory instead")
        results = {r.state.index: r for r in rec.results}
        first = results[rec.kept[0]]
        snaps = {k: rec.labels.from_network(v.numpy()) for k, v in first.snapshots.items()}
        data = {"sha256": rec.data_sha256, "n_train": int(len(rec.train_idx)), "n_test": int(len(rec.test_idx)),
                "test_outside_train_range": rec.outside,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(), "device": rec.device,
                "threads": torch.get_num_threads(), "host_cpus": os.cpu_count(), **(provenance or {})}
        manifest = {
            "train": rec.preset.train.to_dict(), "preset": rec.preset.name, "seed": rec.seed,
            "runs": [{"index": r.state.index, "seed": r.state.seed, "test_loss": r.state.best_test,
                      "epochs": r.state.epoch, "best_epoch": r.state.best_epoch, "kept": r.state.index in rec.kept,
                      **{k: getattr(r.state, k) for k in ("test_before_refit", "refit_alpha")
                         if getattr(r.state, k) is not None}} for r in rec.results],
            "snapshot_run": rec.kept[0],
            "uncertainty": "E_<label>_CNN = standard deviation (ddof=0) of the kept networks' predictions",
            "data": data,
        }
        if self.excluded is not None:
            manifest["excluded_pixels"] = {"runs": to_runs(self.excluded), "n": int(self.excluded.sum()),
                                           "value": 1.0}
        out = write_bundle(
            path, labels=rec.labels, grid=rec.grid, network=rec.network,
            weights={i: results[i].best for i in rec.kept}, seeds={i: results[i].state.seed for i in rec.kept},
            manifest=manifest, split={"train": rec.ids[rec.train_idx].tolist(), "test": rec.ids[rec.test_idx].tolist()},
            history={str(r.state.index): {"train_loss": r.state.train_loss, "test_loss": r.state.test_loss}
                     for r in rec.results},
            snapshots=snaps, test_rows=rec.test_idx if test_rows is None else test_rows)
        self.path = out
        self.manifest = Bundle(out).manifest
        return out

    @classmethod
    def load(cls, path, device=None, verify: bool = True) -> "Ensemble":
        """Load a bundle after checking it (`Bundle.verify`: every file unchanged, weights bound to the manifest),
        with its model-error term where `starlabel calibrate` measured one on these weights."""
        bundle = Bundle(path)
        if verify:
            bundle.verify()
        device = pick_device(device)
        networks = []
        for i in bundle.kept:
            net = Network(bundle.network)
            try:
                net.load_state_dict(bundle.weights(i))
            except RuntimeError as e:
                raise BundleError(f"run{i}.safetensors does not fit the network in manifest.json: {e}") from e
            networks.append(net.to(device).eval().requires_grad_(False))
        ens = cls(networks, bundle.labels, bundle.grid, bundle.manifest, bundle.path, device)
        calibration = bundle.calibration()
        if calibration is not None:
            sm = np.array([calibration["labels"].get(n, {}).get("sigma_model") for n in bundle.label_names],
                          float)  # None (no reference) -> NaN
            unknown = [n for n, v in zip(bundle.label_names, sm) if not np.isfinite(v)]
            if unknown:
                log.warning("%s has no model error for %s (no reference labels there): 0 used",
                            bundle.path / CALIBRATION, unknown)
            ens.model_error = np.nan_to_num(sm, nan=0.0)
        return ens

    # ------------------------------------------------------------------ checks

    def check_grid(self, grid: Grid, source="the data") -> None:
        """Refuse data on another wavelength grid than the one the networks were trained on."""
        if grid != self.grid:
            raise BundleError(f"{source} is on the grid {grid.to_json()}, but the model {self.path or ''} "
                              f"was trained on {self.grid.to_json()}; resample the spectra onto the "
                              "model's grid (starlabel prepare) first")

    def _flux(self, flux) -> torch.Tensor:
        flux = np.asarray(flux, dtype=np.float32)
        if flux.ndim == 1:
            flux = flux[None]
        p = self.networks[0].config.n_pixels
        if flux.ndim != 2 or flux.shape[1] != p:
            raise BundleError(f"flux has shape {tuple(flux.shape)}, but the model expects (N, {p}) pixels")
        if self.excluded is not None:
            flux = blanked(flux, self.excluded)  # a copy: the caller's array stays
        return torch.as_tensor(flux)

    # ------------------------------------------------------------------ prediction

    def predict_each(self, flux, batch: int | None = None, threads: int | None = None,
                     compile: bool = False, fused: bool | None = None) -> np.ndarray:
        """(M, N, L) predictions of every kept network, physical units.

        `batch`: spectra per forward pass; small batches stay in the CPU caches and are
        fastest there (default 32 on CPU, 1024 on GPU). On the CPU the batches are shared out
        to `threads` worker threads (default: torch.get_num_threads()), each running its
        operations single-threaded — much faster than splitting each small operation over
        the cores; the numbers do not depend on the thread count. Every kept network runs on a batch while it is in the cache.
        `compile=True` compiles the first conv block with torch.compile (some seconds, once
        per process): ~1.3× faster for large N; full batches then differ from the eager path
        by float rounding only. If compilation fails, the eager path is used.
        `fused`: run the networks as one `fused.FusedNetwork` (default for several networks
        without `compile`; faster, see benchmarks/bench_fused.py); False: one network at a time."""
        x = self._flux(flux)
        if fused if fused is not None else (len(self.networks) > 1 and not compile):
            from .fused import predict_fused

            return self.labels.from_network(predict_fused(self, x, batch, threads).astype(np.float64))
        cpu = self.device.type == "cpu"
        batch = batch or (32 if cpu else 1024)
        out = np.empty((len(self.networks), len(x), len(self.labels.names)), dtype=np.float32)
        if compile and cpu and len(x) >= batch:
            for net in self.networks:
                if getattr(net, "_first_block", None) is None or net._first_block[1] != batch:
                    net.compile_first_block(batch)
        starts = range(0, len(x), batch)

        def work(chunk):
            with self.inference():
                for i in chunk:
                    xb = x[i : i + batch].to(self.device)
                    for m, net in enumerate(self.networks):
                        out[m, i : i + batch] = net(xb).float().cpu().numpy()

        if not cpu:
            work(starts)
            return self.labels.from_network(out.astype(np.float64))
        threads = max(1, min(threads or torch.get_num_threads(), len(starts)))
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if threads == 1:
                work(starts)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(work, [starts[t::threads] for t in range(threads)]))
        finally:
            torch.set_num_threads(saved)
        return self.labels.from_network(out.astype(np.float64))

    def predict(self, flux, noise_draws: int = 0, seed=0, mask=None, batch: int | None = None,
                threads: int | None = None, compile: bool = False, error=None) -> Prediction:
        """Ensemble mean and standard deviation over the kept networks, and with `noise_draws` > 0
        the noise-propagated uncertainty (`uncertainty.noise_sigma`, seeded by `seed`; `mask`: the
        spectra's pixel mask, whose flagged pixels get no noise; `error`: their error spectrum, the
        noise drawn where it is finite, DER_SNR elsewhere). `batch`, `threads`, `compile`: see
        `predict_each`."""
        if noise_draws < 0:
            raise ValueError(f"noise_draws must be 0 or more, got {noise_draws}")
        each = self.predict_each(flux, batch, threads, compile)
        noise = None
        if noise_draws:
            from ..uncertainty import noise_sigma

            noise = noise_sigma(self, flux, noise_draws, seed, each=each, mask=mask, error=error, batch=batch,
                                threads=threads, compile=compile)
        return Prediction(tuple(self.labels.names), each.mean(0), each.std(0), noise, self.model_error)

    def gradients(self, flux) -> np.ndarray:
        """(N, L, P) ∂label/∂flux of the ensemble mean for each spectrum, physical units per unit flux:
        which pixels each label is read from (paper Sect. 4.4)."""
        x = self._flux(flux).numpy()
        total = np.zeros((len(x), len(self.labels.names), x.shape[1]), np.float32)
        for net in self.networks:
            total += per_spectrum_gradients(net, x, self.labels.scale, self.excluded) / len(self.networks)
        return total
