"""Mixed-precision inference (model/precision.py): used only when measured to keep fp32's labels."""

import logging

import numpy as np
import pytest

from starlabel import Dataset, Ensemble
from starlabel.model import precision


@pytest.fixture(scope="module")
def ens_and_flux(toy_bundle, toy_sets):
    ens = Ensemble.load(toy_bundle)
    return ens, Dataset(toy_sets).read(np.arange(64))


def test_bf16_runs_on_the_cpu_and_its_label_error_is_measured(ens_and_flux):
    ens, flux = ens_and_flux
    err = precision.label_error(ens, flux, "bf16")
    assert set(err) == set(ens.labels.names)
    assert all(np.isfinite(e) and e > 0 for e in err.values())  # bf16 keeps 8 bits: it does move labels
    assert ens.precision == "fp32"  # the measurement leaves the ensemble as it was
    ens.precision = "bf16"
    try:
        p = ens.predict(flux)
    finally:
        ens.precision = "fp32"
    ref = ens.predict(flux)
    assert p.mean.dtype == np.float64 and np.isfinite(p.mean).all()
    assert np.allclose(p.mean, ref.mean, rtol=0.05, atol=50)  # same labels to within bf16's rounding


def test_choose_keeps_fp32_when_the_gate_fails(ens_and_flux, caplog, monkeypatch):
    ens, flux = ens_and_flux
    monkeypatch.setattr(precision, "tolerance", lambda name: 0.0)  # nothing passes a zero tolerance
    with caplog.at_level(logging.WARNING, logger="starlabel.model.precision"):
        assert precision.choose(ens, flux, "auto") == "fp32"
    assert "labelling in fp32" in caplog.text and "TEFF" in caplog.text


def test_choose_takes_a_precision_that_passes(ens_and_flux, monkeypatch):
    ens, flux = ens_and_flux
    monkeypatch.setattr(precision, "tolerance", lambda name: np.inf)
    assert precision.choose(ens, flux, "bf16") == "bf16"
    assert precision.choose(ens, flux, "fp32") == "fp32"


def test_unknown_precision_is_refused(ens_and_flux):
    ens, _ = ens_and_flux
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.context(ens.device, "fp8")


def test_predict_stage_records_the_precision_it_used(toy_bundle, toy_sets, tmp_path):
    from astropy.table import Table

    from starlabel.stages.predict import predict

    out = predict(toy_bundle, toy_sets, tmp_path / "labels.fits", rows=np.arange(40), progress=False,
                  precision="bf16")
    t = Table.read(out)
    assert t.meta["PRECISN"] in ("bf16", "fp32") and np.isfinite(t["TEFF_CNN"]).all()


def test_choose_without_a_sample_keeps_fp32(ens_and_flux):
    ens, flux = ens_and_flux
    assert precision.choose(ens, flux[:0], "auto") == "fp32"
