"""The model bundle: the kept networks with everything needed to use and trust them.

A bundle is a directory (docs/contracts.md):

    manifest.json          labels + scaling, grid, network config, runs, data hash, versions,
                           and the sha256 of every other file
    run<i>.safetensors     weights of each kept run (plain Conv1d/Linear parameter names)
    split.json             {"train": [CNAME…], "test": [CNAME…]}
    history.json           {run: {"train_loss": […], "test_loss": […]}} for every run
    snapshots.safetensors  test-set predictions (physical units) of the first kept run at a few
                           epochs, keys `epoch_<n>`, plus `test_rows` (rows of SETS.h5)

Weights are safetensors only: loading a bundle from a colleague cannot run code.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from .. import __version__
from ..grid import Grid
from ..io.atomic import atomic_path
from ..labels import LabelSet
from . import checkpoint
from .config import NetworkConfig, TrainConfig
from .network import Network

FORMAT = "starlabel-ensemble"
FORMAT_VERSION = 1


def versions() -> dict:
    import astropy
    import h5py
    import safetensors

    return {"starlabel": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__, "astropy": astropy.__version__,
            "h5py": h5py.__version__}


def write_bundle(out, *, grid: Grid, labels: LabelSet, network: NetworkConfig, train_config: TrainConfig,
                 preset: str, seed: int, results: list[dict], kept: list[int], split: dict,
                 test_rows, provenance: dict) -> Path:
    """Write every bundle file (each atomically), then the manifest that vouches for them."""
    out = Path(out)
    files = {}

    def _json(name, obj):
        with atomic_path(out / name) as tmp:
            tmp.write_text(json.dumps(obj, indent=1))
        files[name] = checkpoint.sha256(out / name)

    for i in kept:
        name = f"run{i}.safetensors"
        checkpoint.save(out / name, results[i]["_best"], {"run": i, "seed": results[i]["seed"]})
        files[name] = checkpoint.sha256(out / name)
    first = results[kept[0]]
    snaps = {k: labels.from_network(v.numpy()) for k, v in first["_snaps"].items()}
    snaps = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in snaps.items()}
    snaps["test_rows"] = torch.as_tensor(np.asarray(test_rows), dtype=torch.int64)
    checkpoint.save(out / "snapshots.safetensors", snaps, {"run": kept[0], "labels": list(labels.names)})
    files["snapshots.safetensors"] = checkpoint.sha256(out / "snapshots.safetensors")
    _json("split.json", split)
    _json("history.json", {str(r["index"]): {"train_loss": r["train_loss"], "test_loss": r["test_loss"]}
                           for r in results})
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "labels": labels.to_dict(),
        "grid": json.loads(grid.to_json()),
        "network": network.to_dict(),
        "train": train_config.to_dict(), "preset": preset, "seed": seed,
        "runs": [{"index": r["index"], "seed": r["seed"], "test_loss": r["best_test"], "epochs": r["epoch"],
                  "best_epoch": r["best_epoch"], "kept": r["index"] in kept,
                  **{k: r[k] for k in ("test_before_refit", "refit_alpha") if k in r}} for r in results],
        "kept": list(kept),
        "snapshot_run": kept[0],
        "uncertainty": "E_<label>_CNN = standard deviation (ddof=0) of the kept networks' predictions",
        "data": provenance,
        "versions": versions(),
        "files": files,
    }
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return out


class BundleError(ValueError):
    """A model bundle that is incomplete, altered, or does not fit the data."""


class Ensemble:
    """The kept networks of a bundle. `predict(flux) -> (mean, std)` in physical units."""

    def __init__(self, networks: list[Network], labels: LabelSet, grid: Grid, manifest: dict,
                 path: Path | None = None, device=None):
        self.networks = networks
        self.labels = labels
        self.grid = grid
        self.manifest = manifest
        self.path = path
        self.device = torch.device(device) if device is not None else next(networks[0].parameters()).device

    @classmethod
    def load(cls, path, device=None, verify: bool = True) -> "Ensemble":
        """Load and check a bundle: every file present and unchanged (sha256 in the manifest)."""
        path = Path(path)
        mpath = path / "manifest.json"
        if not path.is_dir():
            raise BundleError(f"model bundle {path} does not exist or is not a directory")
        if not mpath.exists():
            raise BundleError(f"{path} is not a complete model bundle: manifest.json is missing "
                              "(was the training finished?)")
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise BundleError(f"{mpath} is not valid JSON: {e}") from e
        if manifest.get("format") != FORMAT:
            raise BundleError(f"{mpath} is not a starlabel ensemble manifest")
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise BundleError(f"{path} was written by a newer starlabel (bundle format "
                              f"{manifest['format_version']}); upgrade starlabel")
        files = manifest.get("files", {})
        for name in [f"run{i}.safetensors" for i in manifest["kept"]]:
            if name not in files:
                raise BundleError(f"{mpath} lists no checksum for {name}")
        for name, digest in files.items():
            f = path / name
            if not f.exists():
                raise BundleError(f"model bundle {path} is incomplete: {name} is missing")
            if verify and checkpoint.sha256(f) != digest:
                raise BundleError(f"{f} does not match the checksum in manifest.json: the file was changed "
                                  "or damaged after training; refusing to use it")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        cfg = NetworkConfig.from_dict(manifest["network"])
        networks = []
        for i in manifest["kept"]:
            net = Network(cfg)
            try:
                net.load_state_dict(load_file(str(path / f"run{i}.safetensors")))
            except RuntimeError as e:
                raise BundleError(f"run{i}.safetensors does not fit the network in manifest.json: {e}") from e
            networks.append(net.to(device).eval().requires_grad_(False))
        grid = Grid.from_json(json.dumps(manifest["grid"]))
        return cls(networks, LabelSet.from_dict(manifest["labels"]), grid, manifest, path, device)

    # ------------------------------------------------------------------ checks

    def check_grid(self, grid: Grid, source="the data") -> None:
        """Refuse data on another wavelength grid than the one the networks were trained on."""
        if grid != self.grid:
            raise BundleError(f"{source} is on the grid {grid.to_json()}, but the model {self.path or ''} "
                              f"was trained on {self.grid.to_json()}; resample the spectra onto the "
                              "model's grid (starlabel prepare) first")

    def _flux(self, flux) -> torch.Tensor:
        flux = torch.as_tensor(np.asarray(flux, dtype=np.float32))
        if flux.ndim == 1:
            flux = flux[None]
        p = self.networks[0].config.n_pixels
        if flux.ndim != 2 or flux.shape[1] != p:
            raise BundleError(f"flux has shape {tuple(flux.shape)}, but the model expects (N, {p}) pixels")
        return flux

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
            with torch.inference_mode():
                for i in chunk:
                    xb = x[i : i + batch].to(self.device)
                    for m, net in enumerate(self.networks):
                        out[m, i : i + batch] = net(xb).cpu().numpy()

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

    def predict(self, flux, batch: int | None = None, threads: int | None = None,
                compile: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and standard deviation over the kept networks, each (N, L).
        `batch`, `threads`, `compile`: see `predict_each`."""
        each = self.predict_each(flux, batch, threads, compile)
        return each.mean(0), each.std(0)
