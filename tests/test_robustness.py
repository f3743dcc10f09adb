"""Bad input, hostile use and a failing system, through the command line as a user meets them.

Every case: the command exits 2 with one line `starlabel VERB: error: …` that names the file and
the cause, and leaves no partial output behind (docs/robustness.md lists the same cases).
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table
from toys import LABELS, make_sets

from starlabel.cli import main
from starlabel.model.checkpoint import sha256

FAST_TRAIN = ["--runs", "1", "--keep", "1", "--max-epochs", "1", "--labels", ",".join(LABELS)]


def run_cli(argv, capsys):
    """(exit code, stdout, the stderr lines) of `starlabel ARGV`."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def assert_one_line(code, err, verb, *fragments):
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith(f"starlabel {verb}: error: "), err
    assert "Traceback" not in err[0]
    for f in fragments:
        assert f in err[0], (f, err[0])


def files_under(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


# ---------------------------------------------------------------- item 1: an edited bundle


def _edit_manifest(edit):
    def apply(bundle):
        m = json.loads((bundle / "manifest.json").read_text())
        edit(m)
        (bundle / "manifest.json").write_text(json.dumps(m))
    return apply


def _swap_names(m):
    n = m["labels"]["names"]
    n[0], n[1] = n[1], n[0]


def _pickle_weights(bundle):
    """A pickle under the weight file's name, with the manifest's sha256 updated to match."""
    import torch

    m = json.loads((bundle / "manifest.json").read_text())
    name = f"run{m['kept'][0]}.safetensors"
    torch.save({"w": torch.zeros(3)}, bundle / name)
    m["files"][name] = sha256(bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(m))


BUNDLE_CASES = [
    ("swapped label names", _edit_manifest(_swap_names), "does not match the labels"),
    ("edited scaling", _edit_manifest(lambda m: m["labels"]["mean"].__setitem__(0, 1.0)), "does not match the labels"),
    ("one label name too few", _edit_manifest(lambda m: [x.pop() for x in m["labels"].values()]),
     "names 2 labels but its networks have 3 outputs"),
    ("one label name too many", _edit_manifest(lambda m: [x.append(x[-1]) for x in m["labels"].values()]),
     "names 4 labels but its networks have 3 outputs"),
    ("kept deleted", _edit_manifest(lambda m: m.pop("kept")), "has no 'kept' entry"),
    ("pickle with updated sha256", _pickle_weights, "is not a readable safetensors file"),
    ("weight file changed", lambda b: (b / "run0.safetensors").write_bytes(b"x" * 10)
     if (b / "run0.safetensors").exists() else (b / "run1.safetensors").write_bytes(b"x" * 10),
     "does not match the checksum"),
    ("manifest.json missing", lambda b: (b / "manifest.json").unlink(), "manifest.json is missing"),
    ("manifest.json not JSON", lambda b: (b / "manifest.json").write_text("{"), "is not valid JSON"),
]


@pytest.mark.parametrize("case, damage, message", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_edited_bundle_is_refused_in_one_line(case, damage, message, toy_bundle, toy_sets, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(toy_bundle, bundle)
    damage(bundle)
    out = tmp_path / "labels.fits"
    code, _, err = run_cli(["predict", bundle, toy_sets, "--out", out], capsys)
    assert_one_line(code, err, "predict", message)
    assert not out.exists() and files_under(tmp_path).count("labels.fits") == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".labels.fits")]


def test_intact_bundle_copy_predicts(toy_bundle, toy_sets, tmp_path, capsys):
    """The control for the cases above: the undamaged copy works."""
    bundle = tmp_path / "bundle"
    shutil.copytree(toy_bundle, bundle)
    code, _, err = run_cli(["predict", bundle, toy_sets, "--out", tmp_path / "labels.fits"], capsys)
    assert code == 0, err
    assert (tmp_path / "labels.fits").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "labels.fits"]  # no lock, no temp left


# ---------------------------------------------------------------- small inputs for the file stages

GRID = "X:5000:5030:0.1"


def tiny_survey(d, n=6, seed=0):
    """n stars with one GES FITS spectrum each on setup X (4990–5040 Å) and a GES-like catalogue."""
    from starlabel.io.spectra import write_ges_fits

    rng = np.random.default_rng(seed)
    (d / "spectra").mkdir(parents=True, exist_ok=True)
    wave = np.arange(4990.0, 5040.0, 0.05)
    names = [f"S{i:03d}" for i in range(n)]
    for name in names:
        flux = 1 - 0.4 * np.exp(-0.5 * ((wave - 5012.0) / 0.3) ** 2) + rng.normal(0, 0.005, wave.size)
        write_ges_fits(d / "spectra" / f"{name}_X.fits", wave[0], 0.05, flux, np.full(wave.size, 0.005),
                       {"CNAME": name, "SETUP": "X"})
    cat = ges_catalogue(names, rng)
    cat["SETUP"], cat["VRAD"] = "X", 0.0
    cat.write(d / "catalogue.fits", overwrite=True)
    return d / "catalogue.fits", d / "spectra"


def ges_catalogue(names, rng):
    n = len(names)
    return Table({"CNAME": names, "TEFF": rng.uniform(4500, 6500, n), "E_TEFF": np.full(n, 50.0),
                  "LOGG": rng.uniform(1, 4.5, n), "E_LOGG": np.full(n, 0.1), "FEH": np.full(n, 0.0),
                  "FE1": np.full(n, 7.45), "E_FE1": np.full(n, 0.05), "MG1": np.full(n, 7.55),
                  "E_MG1": np.full(n, 0.05), "AL1": np.full(n, 6.40), "E_AL1": np.full(n, 0.05),
                  "SNR": np.full(n, 80.0), "VSINI": np.full(n, 3.0)})


def ges_dataset(path, n=40, drop=()):
    """A prepared dataset (toy spectra) whose catalogue has every column `select` reads, less `drop`."""
    from toys import TOY_GRID, toy_spectra

    from starlabel.io.dataset import write_dataset

    flux, _ = toy_spectra(n)
    cat = ges_catalogue([f"G{i:04d}" for i in range(n)], np.random.default_rng(1))
    cat.remove_columns(list(drop))
    write_dataset(path, TOY_GRID, flux, np.zeros(flux.shape, "u1"), cat)
    return path


def enospc(path="?"):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


# ---------------------------------------------------------------- item 2: the system says no


def _under_file(tmp_path, name):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile" / name


def _disk_full_h5(monkeypatch):
    from starlabel.io.dataset import DatasetWriter

    def append(self, flux, mask, error=None):
        raise OSError(errno.ENOSPC, f"Can't write data (file write failed: name = '{self._tmp}', errno = 28, "
                                    "error message = 'No space left on device')")

    monkeypatch.setattr(DatasetWriter, "append", append)


def _disk_full_checkpoint(monkeypatch):
    import starlabel.model.checkpoint as ck

    def save_file(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 100)  # a half-written temporary file
        raise enospc(path)

    monkeypatch.setattr(ck, "save_file", save_file)


def _disk_full_fits(monkeypatch):
    def write(self, path, *a, **k):
        open(path, "wb").close()
        raise enospc(path)

    monkeypatch.setattr(Table, "write", write)


def _read_only_dir(tmp_path):
    """A directory we may not write: chmod for a normal user; root ignores modes, so /sys then."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    if os.access("/sys", os.W_OK) and not os.path.isdir("/sys/class"):
        pytest.skip("running as root without a read-only directory to write into")
    return __import__("pathlib").Path("/sys")


def _inputs(kind, tmp_path, toy_sets):
    if kind == "prepare":
        cat, spectra = tiny_survey(tmp_path / "in")
        return ["prepare", cat, spectra, "--grid", GRID, "--no-progress"]
    if kind == "select":
        return ["select", ges_dataset(tmp_path / "in.h5")]
    if kind == "train":
        return ["train", toy_sets, *FAST_TRAIN, "--no-progress"]
    return ["predict", None, toy_sets, "--no-progress"]  # the bundle is filled in by the test


OS_CASES = [  # (case, verb, output name, how it fails, message fragment)
    ("prepare --out under a regular file", "prepare", "ds.h5", "under_file", "afile: Not a directory"),
    ("select --out under a regular file", "select", "sets.h5", "under_file", "afile: Not a directory"),
    ("train --out under a regular file", "train", "model", "under_file", "afile: Not a directory"),
    ("predict --out under a regular file", "predict", "labels.fits", "under_file", "afile: Not a directory"),
    ("prepare into a read-only directory", "prepare", "ds.h5", "read_only", "Permission denied"),
    ("select into a read-only directory", "select", "sets.h5", "read_only", "Permission denied"),
    ("predict into a read-only directory", "predict", "labels.fits", "read_only", "Permission denied"),
    ("prepare on a full disk", "prepare", "ds.h5", _disk_full_h5, "ds.h5: No space left on device"),
    ("select on a full disk", "select", "sets.h5", _disk_full_h5, "sets.h5: No space left on device"),
    ("train on a full disk", "train", "model", _disk_full_checkpoint, "run0.safetensors: No space left on device"),
    ("predict on a full disk", "predict", "labels.fits", _disk_full_fits, "labels.fits: No space left on device"),
]


@pytest.mark.parametrize("case, verb, name, how, message", OS_CASES, ids=[c[0] for c in OS_CASES])
def test_os_errors_are_one_line_and_leave_nothing(case, verb, name, how, message, toy_sets, toy_bundle,
                                                  tmp_path, monkeypatch, capsys):
    argv = _inputs(verb, tmp_path, toy_sets)
    if verb == "predict":
        argv[1] = toy_bundle
    if how == "under_file":
        out = _under_file(tmp_path, name)
    elif how == "read_only":
        out = _read_only_dir(tmp_path) / name
    else:
        out = tmp_path / "out" / name
        how(monkeypatch)
    before = files_under(tmp_path)
    code, _, err = run_cli([*argv, "--out", out], capsys)
    assert_one_line(code, err, verb, message, *([name] if how == "read_only" else []))
    assert files_under(tmp_path) == before  # no partial output, no temporary, no lock, no settings.json
    assert not out.exists()
    if how not in ("under_file", "read_only"):
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


# ---------------------------------------------------------------- item 3: temporaries of killed runs


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temp_of_a_dead_process_is_removed_on_the_next_run(tmp_path, capsys):
    cat, spectra = tiny_survey(tmp_path / "in", n=3)
    out = tmp_path / "ds.h5"
    stale = tmp_path / f".ds.h5.tmp{_dead_pid()}"
    stale.write_bytes(b"\0" * 4096)  # as kill -9 during prepare leaves it
    alive = tmp_path / f".ds.h5.tmp{os.getppid()}"  # a live process's temporary is not touched
    alive.write_bytes(b"\0")
    code, stdout, err = run_cli(["prepare", cat, spectra, "--out", out, "--grid", GRID, "--no-progress"], capsys)
    assert code == 0, err
    assert out.exists() and not stale.exists() and alive.exists()
    assert f"removed {stale}" in stdout



def test_writing_many_files_into_one_directory_lists_it_once(tmp_path, monkeypatch):
    """The stale-temporary check must not list the directory before every write (the mock survey writes
    70 000 files into one: that made it quadratic), yet still removes a dead process's temporary."""
    from starlabel.io import atomic

    stale = tmp_path / f".f7.txt.tmp{_dead_pid()}"
    stale.write_text("left by kill -9")
    calls = []
    real = os.scandir
    monkeypatch.setattr(atomic.os, "scandir", lambda d: calls.append(d) or real(d))
    for i in range(50):
        with atomic.atomic_path(tmp_path / f"f{i}.txt") as tmp:
            tmp.write_text(str(i))
    assert len(calls) == 1 and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"f{i}.txt" for i in range(50))


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_safetensors_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    """safetensors ≥ 0.8.1 creates files 0600 whatever the umask: a model bundle a colleague cannot read.
    Written through atomic_path, a new file gets 0o666 minus the umask and a rewritten one keeps its mode."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from starlabel.io import atomic

    old = os.umask(0o022)
    try:
        with atomic.atomic_path(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.zeros(3)}, str(tmp))
        assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        with atomic.atomic_path(tmp_path / "g.safetensors") as tmp:
            save_file({"w": torch.zeros(3)}, str(tmp))
        assert (tmp_path / "g.safetensors").stat().st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "w.safetensors", 0o600)  # the owner made it private: a rewrite keeps that
        with atomic.atomic_path(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.ones(3)}, str(tmp))
        assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# ---------------------------------------------------------------- items 4, 6, 8: bad or thin inputs


def test_zero_row_catalogue_is_refused_by_prepare(tmp_path, capsys):
    cat, spectra = tiny_survey(tmp_path / "in", n=2)
    Table.read(cat)[:0].write(cat, overwrite=True)
    code, _, err = run_cli(["prepare", cat, spectra, "--out", tmp_path / "ds.h5", "--grid", GRID], capsys)
    assert_one_line(code, err, "prepare", "catalogue.fits has no rows")
    assert not (tmp_path / "ds.h5").exists()


def test_zero_row_dataset_is_refused_by_select(tmp_path, capsys):
    ds = ges_dataset(tmp_path / "ds.h5", n=0)
    code, _, err = run_cli(["select", ds, "--out", tmp_path / "sets.h5"], capsys)
    assert_one_line(code, err, "select", "ds.h5 holds no spectra")
    assert not (tmp_path / "sets.h5").exists()


@pytest.mark.parametrize("drop, message", [(["E_TEFF"], "has no column E_TEFF, needed for the labels and quality cuts"),
                                           (["SNR", "FE1"], "has no columns FE1, SNR")])
def test_select_names_missing_columns(drop, message, tmp_path, capsys):
    ds = ges_dataset(tmp_path / "ds.h5", drop=drop)
    code, _, err = run_cli(["select", ds, "--out", tmp_path / "sets.h5"], capsys)
    assert_one_line(code, err, "select", message)
    assert not (tmp_path / "sets.h5").exists()


def test_select_warns_without_teff(tmp_path, capsys):
    ds = ges_dataset(tmp_path / "ds.h5", drop=["TEFF"])
    code, stdout, err = run_cli(["select", ds, "--out", tmp_path / "sets.h5"], capsys)
    assert code == 0, err
    assert "warning: ds.h5 has no column TEFF" in stdout


def test_train_names_a_missing_label_column(tmp_path, capsys):
    sets = make_sets(tmp_path / "sets.h5", n=30)
    code, _, err = run_cli(["train", sets, "--out", tmp_path / "m", *FAST_TRAIN, "--labels", "TEFF,MG_FE"], capsys)
    assert_one_line(code, err, "train", "has no column MG_FE, needed to train on the labels TEFF, MG_FE")
    assert "[" not in err[0]  # not a list of every column of the catalogue
    assert not (tmp_path / "m").exists()


def test_train_on_few_stars_warns_with_numbers(tmp_path, capsys):
    sets = make_sets(tmp_path / "sets.h5", n=30)
    code, stdout, err = run_cli(["train", sets, "--out", tmp_path / "m", *FAST_TRAIN, "--no-progress"], capsys)
    assert code == 0, err
    assert "warning: sets.h5 gives only 18 training and 12 test spectra" in stdout


def test_wavelengths_in_nm_labelled_angstrom_say_so(tmp_path, capsys):
    from starlabel.io.dataset import Dataset
    from starlabel.io.spectra import write_ges_fits

    cat, spectra = tiny_survey(tmp_path / "in", n=2)
    wave_nm = np.arange(499.0, 504.0, 0.005)
    write_ges_fits(spectra / "S000_X.fits", wave_nm[0], 0.005, np.ones(wave_nm.size), None,
                   {"CNAME": "S000", "SETUP": "X"})  # CUNIT1 = 'Angstrom', values in nm
    code, _stdout, err = run_cli(["prepare", cat, spectra, "--out", tmp_path / "ds.h5", "--grid", GRID,
                                 "--no-progress"], capsys)
    assert code == 0, err
    reason = Dataset(tmp_path / "ds.h5").rejects["REASON"][0]
    assert "S000_X.fits" in reason and "look like nm" in reason and "CUNIT1" in reason


# ---------------------------------------------------------------- item 7: demo settings


@pytest.mark.parametrize("older", [False, True], ids=["demo_settings.json", "older run's demo.json"])
def test_demo_refuses_other_settings_on_an_existing_run(older, tmp_path, capsys):
    run = tmp_path / "demo"
    run.mkdir()
    made = {"preset": "quick", "seed": 0, "n_stars": 3000, "runs": 4, "keep": 3, "max_epochs": None}
    if older:
        (run / "demo.json").write_text(json.dumps({"settings": dict(made, workers=2), "timings_s": {}}))
    else:
        (run / "demo_settings.json").write_text(json.dumps(made))
    before = files_under(run)
    code, _, err = run_cli(["demo", "--out", run, "--seed", "5", "--n-stars", "500", "--runs", "4", "--keep", "3"],
                           capsys)
    assert_one_line(code, err, "demo", "n_stars (3000 there, 500 now)", "seed (0 there, 5 now)")
    assert files_under(run) == before


# ---------------------------------------------------------------- item 9: one writer per output


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.mark.parametrize("verb", ["train", "predict"])
def test_a_second_writer_is_refused(verb, live_pid, toy_sets, toy_bundle, tmp_path, capsys):
    if verb == "train":
        out = tmp_path / "model"
        out.mkdir()
        lock = out / ".starlabel.lock"
        argv = ["train", toy_sets, *FAST_TRAIN]
    else:
        out = tmp_path / "labels.fits"
        lock = tmp_path / ".labels.fits.lock"
        argv = ["predict", toy_bundle, toy_sets]
    lock.write_text(f"{live_pid}\n")
    code, _, err = run_cli([*argv, "--out", out, "--no-progress"], capsys)
    assert_one_line(code, err, verb, f"being written by another starlabel process (pid {live_pid}")
    assert lock.read_text().strip() == str(live_pid)
    assert files_under(tmp_path) == [str(lock.relative_to(tmp_path))]


def test_a_stale_lock_is_taken_over(toy_sets, toy_bundle, tmp_path, capsys):
    lock = tmp_path / ".labels.fits.lock"
    lock.write_text(f"{_dead_pid()}\n")
    code, stdout, err = run_cli(["predict", toy_bundle, toy_sets, "--out", tmp_path / "labels.fits",
                                 "--no-progress"], capsys)
    assert code == 0, err
    assert "taking over the lock" in stdout and not lock.exists() and (tmp_path / "labels.fits").exists()


# ---------------------------------------------------------------- item 10: output hygiene


REQUIRED = {"prepare": ["c", "s", "--out", "o"], "select": ["d", "--out", "o"], "train": ["s", "--out", "o"],
            "predict": ["m", "d", "--out", "o"], "map": ["s", "--out", "o"], "evaluate": ["m", "s", "l", "--out", "o"],
            "demo": [], "synth": ["survey", "--out", "o"]}


@pytest.mark.parametrize("verb", sorted(REQUIRED))
def test_unknown_option_prints_the_verbs_usage(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, *REQUIRED[verb], "--no-such-option"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert f"usage: starlabel {verb}" in err and "--no-such-option" in err


@pytest.mark.parametrize("verb", ["prepare", "train", "predict", "explain", "demo"])
def test_every_verb_with_a_bar_has_no_progress(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "-h"])
    assert "--no-progress" in capsys.readouterr().out


def test_select_cut_options_show_help_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["select", "-h"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("lowest S/N (default 30.0)", "largest E_TEFF in K (default 200.0)", "(default 0.3)",
                 "largest VSINI in km/s (default 20.0)", "observed set: lowest S/N"):
        assert text in out


@pytest.mark.parametrize("fused", [False, True], ids=["one run at a time", "fused training"])
def test_a_refit_that_makes_a_run_worse_is_undone(fused, tmp_path, monkeypatch, caplog):
    """Sabotage the ridge refit (output layer to zeros): the run keeps its pre-refit weights and says so."""
    import logging

    from toys import FAST

    import starlabel.model.fused_train as ft
    import starlabel.model.run as mt
    from starlabel.model.bundle import Bundle
    from starlabel.stages.train import train

    def bad_refit(net, *a, **k):
        last = [m for m in net.modules() if hasattr(m, "weight")][-1]
        with __import__("torch").no_grad():
            last.weight.zero_()
            last.bias.fill_(10.0)
        return [0.0]

    monkeypatch.setattr(mt, "refit_output_layer", bad_refit)
    monkeypatch.setattr(ft, "refit_output_layer", bad_refit)
    sets = make_sets(tmp_path / "sets.h5", n=60)
    with caplog.at_level(logging.INFO, logger="starlabel"):
        out = train(sets, tmp_path / "m", runs=2 if fused else 1, keep=1, seed=2, fused=fused,
                    **dict(FAST, refit_output=True, max_epochs=2))
    assert "refitting the output layer raised the test loss" in caplog.text
    run = Bundle(out).runs[0]
    assert "refit_alpha" not in run or run["refit_alpha"] is None
    assert np.isclose(run["test_loss"], min(Bundle(out).history()["0"]["test_loss"]))


# ---------------------------------------------------------------- item 5: half a file


@pytest.mark.parametrize("fraction, what", [(0.5, "without an error extension"), (0.6, "truncated FITS file")],
                         ids=["cut at the end of the flux HDU", "cut inside the error extension"])
def test_half_a_ges_file_is_kept_with_a_warning(fraction, what, tmp_path, capsys):
    from starlabel.io.dataset import Dataset

    cat, spectra = tiny_survey(tmp_path / "in", n=3)
    f = spectra / "S001_X.fits"
    raw = f.read_bytes()
    f.write_bytes(raw[: int(len(raw) * fraction)])  # flux HDU intact, ERROR extension gone
    code, stdout, err = run_cli(["prepare", cat, spectra, "--out", tmp_path / "ds.h5", "--grid", GRID,
                                 "--no-progress"], capsys)
    assert code == 0, err
    ds = Dataset(tmp_path / "ds.h5")
    assert len(ds) == 3  # the star is kept
    (row,) = [r for r in ds.rejects if r["CNAME"] == "S001"]
    assert row["REASON"].startswith("WARNING (star kept)") and what in row["REASON"]
    assert "error extension is missing" in row["REASON"] and row["FILE"] == str(f)
    assert "0 rejected spectra; 1 warnings" in stdout and "warning: " in stdout
