"""The model bundle on disk: the one writer and the one reader of a bundle directory.

A bundle is a directory (docs/contracts.md):

    manifest.json          labels + scaling, grid, network config, runs, data hash, versions,
                           and the sha256 of every other file
    run<i>.safetensors     weights of each kept run (plain Conv1d/Linear parameter names); the
                           metadata binds them to the manifest's labels, scaling, grid and network
    split.json             {"train": [CNAME…], "test": [CNAME…]}
    history.json           {run: {"train_loss": […], "test_loss": […]}} for every run
    snapshots.safetensors  test-set predictions (physical units) of the first kept run at a few
                           epochs, keys `epoch_<n>`, plus `test_rows` (rows of SETS.h5)
    calibration.json       optional, written by `starlabel calibrate` after training: the model-error
                           term of each label (evaluation/calibration.py), bound to the files it was
                           measured with (`fingerprint`), so a grown or retrained bundle drops it

Weights are safetensors only: loading a bundle from a colleague cannot run code. The sha256 list
protects every file against change; the binding (a hash of the label names, scaling, grid and
network settings stored inside each weight file) protects the meaning of the weights against an
edited manifest, which would otherwise write one label's predictions under another's name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..grid import Grid
from ..io.atomic import write_json
from ..labels import LabelSet
from . import checkpoint
from .config import NetworkConfig

log = logging.getLogger(__name__)

FORMAT = "starlabel-ensemble"
FORMAT_VERSION = 1
REQUIRED = ("labels", "grid", "network", "kept", "files")
CALIBRATION = "calibration.json"


class BundleError(ValueError):
    """A model bundle that is incomplete, altered, or does not fit the data."""


def versions() -> dict:
    import astropy
    import h5py
    import safetensors

    return {"starlabel": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__, "astropy": astropy.__version__,
            "h5py": h5py.__version__}


def binding(manifest: dict) -> str:
    """sha256 of what gives the weights their meaning: label names and scaling, grid, network, and the
    excluded pixels where there are any (bundles without them keep their binding)."""
    core = {k: manifest[k] for k in ("labels", "grid", "network")}
    if "excluded_pixels" in manifest:
        core["excluded_pixels"] = manifest["excluded_pixels"]
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def fingerprint(manifest: dict) -> str:
    """sha256 of the manifest's file checksums: changes whenever any weight, split or history does."""
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()


def write_calibration(path, record: dict) -> Path:
    """Write `record` (label → {"sigma_model", …} under "labels", plus provenance) as the bundle's
    calibration.json, bound to the bundle as it is now."""
    bundle = Bundle(path)
    unknown = sorted(set(record["labels"]) - set(bundle.label_names))
    if unknown:
        raise BundleError(f"calibration names labels {unknown} that the bundle {bundle.path} does not predict")
    labels = {n: {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in c.items()}
              for n, c in record["labels"].items()}  # NaN (no reference) as null: plain JSON for any reader
    return write_json(bundle.path / CALIBRATION, {"format": "starlabel-calibration", "format_version": 1,
                                                  "fingerprint": fingerprint(bundle.manifest), **record,
                                                  "labels": labels}, indent=1, allow_nan=False)


def write_bundle(out, *, labels: LabelSet, grid: Grid, network: NetworkConfig, weights: dict[int, dict],
                 seeds: dict[int, int], manifest: dict, split: dict | None = None, history: dict | None = None,
                 snapshots: dict[str, np.ndarray] | None = None, test_rows=None) -> Path:
    """Write every bundle file (each atomically), then the manifest that vouches for them.

    `weights`: {run index: state dict} of the kept runs; `manifest`: the remaining manifest
    entries (train settings, runs, provenance), to which labels, grid, network, kept, versions
    and the file checksums are added here."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "labels": labels.to_dict(),
                "grid": json.loads(grid.to_json()), "network": network.to_dict(), **manifest,
                "kept": sorted(weights)}
    bind = binding(json.loads(json.dumps(manifest)))
    files = {}

    def _json(name, obj):
        write_json(out / name, obj, indent=1)
        files[name] = checkpoint.sha256(out / name)

    for i, state in sorted(weights.items()):
        name = f"run{i}.safetensors"
        checkpoint.save(out / name, state, {"run": i, "seed": seeds[i], "binding": bind})
        files[name] = checkpoint.sha256(out / name)
    if snapshots is not None:
        snaps = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in snapshots.items()}
        snaps["test_rows"] = torch.as_tensor(np.asarray(test_rows), dtype=torch.int64)
        checkpoint.save(out / "snapshots.safetensors", snaps,
                        {"run": manifest.get("snapshot_run"), "labels": list(labels.names)})
        files["snapshots.safetensors"] = checkpoint.sha256(out / "snapshots.safetensors")
    if split is not None:
        _json("split.json", split)
    if history is not None:
        _json("history.json", history)
    manifest |= {"versions": versions(), "files": files}
    write_json(out / "manifest.json", manifest, indent=1)
    return out


class Bundle:
    """A bundle directory, read and checked: `Bundle(path).verify()` before trusting its weights.

    Opening reads and checks the manifest only; `verify()` checks every file's sha256 and that each
    weight file is bound to this manifest; `weights(i)` reads one kept run's state dict."""

    def __init__(self, path):
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not self.path.is_dir():
            raise BundleError(f"model bundle {self.path} does not exist or is not a directory")
        if not mpath.exists():
            raise BundleError(f"{self.path} is not a complete model bundle: manifest.json is missing "
                              "(was the training finished?)")
        try:
            m = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise BundleError(f"{mpath} is not valid JSON: {e}") from e
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BundleError(f"{mpath} is not a starlabel ensemble manifest")
        if m.get("format_version", 0) > FORMAT_VERSION:
            raise BundleError(f"{self.path} was written by a newer starlabel (bundle format "
                              f"{m['format_version']}); upgrade starlabel")
        missing = [k for k in REQUIRED if k not in m]
        if missing:
            raise BundleError(f"{mpath} has no {', '.join(repr(k) for k in missing)} entry: the manifest "
                              "was edited or damaged; refusing the bundle")
        self.manifest = m
        try:
            self.labels, self.grid, self.network
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{mpath} has unreadable labels, grid or network settings ({e!r}); "
                              "refusing the bundle") from e
        if len(self.labels.names) != self.network.n_labels:
            raise BundleError(f"{mpath} names {len(self.labels.names)} labels but its networks have "
                              f"{self.network.n_labels} outputs: the manifest was edited; refusing the bundle")

    # ------------------------------------------------------------------ contents

    @cached_property
    def labels(self) -> LabelSet:
        return LabelSet.from_dict(self.manifest["labels"])

    @property
    def label_names(self) -> list[str]:
        return list(self.labels.names)

    @cached_property
    def grid(self) -> Grid:
        return Grid.from_json(json.dumps(self.manifest["grid"]))

    @cached_property
    def network(self) -> NetworkConfig:
        return NetworkConfig.from_dict(self.manifest["network"])

    @property
    def kept(self) -> list[int]:
        return [int(i) for i in self.manifest["kept"]]

    @property
    def runs(self) -> list[dict]:
        return list(self.manifest.get("runs", []))

    @property
    def weight_files(self) -> list[str]:
        return [f"run{i}.safetensors" for i in self.kept]

    def _json(self, name: str):
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def split(self) -> dict | None:
        """{"train": [CNAME…], "test": [CNAME…]}, or None for a bundle without split.json."""
        return self._json("split.json")

    def history(self) -> dict | None:
        """{run: {"train_loss": […], "test_loss": […]}}, or None."""
        return self._json("history.json")

    def calibration(self) -> dict | None:
        """calibration.json if it was measured on this bundle's present files, else None (a stale one,
        from before the ensemble was grown or retrained, is reported and ignored)."""
        try:
            record = self._json(CALIBRATION)
        except json.JSONDecodeError as e:
            log.warning("%s is not valid JSON (%s): ignored; run `starlabel calibrate` again",
                        self.path / CALIBRATION, e)
            return None
        if record is None:
            return None
        if record.get("fingerprint") != fingerprint(self.manifest):
            log.warning("%s was measured on other weights or another split than the bundle has now: ignored; "
                        "run `starlabel calibrate` again", self.path / CALIBRATION)
            return None
        return record

    def snapshots(self) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        """{epoch: (N, L) test-set predictions} of the first kept run and the test rows, or ({}, None)."""
        path = self.path / "snapshots.safetensors"
        if not path.exists():
            return {}, None
        from safetensors.numpy import load_file

        data = load_file(str(path))
        rows = data.pop("test_rows", None)
        snaps = {int(k.split("_", 1)[1]): v for k, v in data.items() if k.startswith("epoch_")}
        return dict(sorted(snaps.items())), rows

    # ------------------------------------------------------------------ trust

    def verify(self) -> "Bundle":
        """Every listed file present and unchanged, every weight file bound to this manifest."""
        for name in self.weight_files:
            if name not in self.manifest["files"]:
                raise BundleError(f"{self.path / 'manifest.json'} lists no checksum for {name}")
        for name, digest in self.manifest["files"].items():
            f = self.path / name
            if not f.exists():
                raise BundleError(f"model bundle {self.path} is incomplete: {name} is missing")
            if checkpoint.sha256(f) != digest:
                raise BundleError(f"{f} does not match the checksum in manifest.json: the file was changed "
                                  "or damaged after training; refusing to use it")
        expected = binding(self.manifest)
        for name in self.weight_files:
            bound = self._weight_state(name).get("binding")
            if bound is None:
                log.warning("%s predates manifest binding: its labels and grid cannot be checked", name)
            elif bound != expected:
                raise BundleError(f"{self.path / 'manifest.json'} does not match the labels, scaling, grid or "
                                  f"network that {name} was trained with: the manifest was edited; "
                                  "refusing the bundle")
        return self

    def _weight_state(self, name: str) -> dict:
        try:
            return checkpoint.load_state(self.path / name)
        except Exception as e:  # safetensors raises its own error type for a non-safetensors file
            raise BundleError(f"{self.path / name} is not a readable safetensors file ({e}); "
                              "refusing to use it") from e

    def weights(self, run: int) -> dict[str, torch.Tensor]:
        """The state dict of kept run `run` (CPU tensors)."""
        from safetensors.torch import load_file

        path = self.path / f"run{run}.safetensors"
        try:
            return load_file(str(path))
        except Exception as e:
            raise BundleError(f"{path} is not a readable safetensors file ({e}); refusing to use it") from e
