"""VALD molecular lines in the PySME engine's HR21 (`PysmeSettings(molecules=True)`, issue 11 item 1)."""

import numpy as np
import pytest


def test_molecule_names_follow_sme():
    pytest.importorskip("pysme", reason="pysme-astro not installed")
    from starlabel.mock.pysme_engine import molecule_species

    assert molecule_species("CC I") == "C2 1"
    assert molecule_species("CN I") == "CN 1"
    assert molecule_species("TiO I") == "TiO 1"
    assert molecule_species("MgH I") == "MgH 1"
    with pytest.raises(ValueError):
        molecule_species("Fe1 I")


def test_molecules_are_read_and_enter_the_key_only_when_on(shared_data):
    pytest.importorskip("pysme", reason="pysme-astro not installed")
    from starlabel.mock import pysme_engine as pe

    mol = pe.read_vald_molecules(shared_data / "linelists", [(8470.0, 8940.0)], 2.0)
    assert set(mol["species"]) == {"CH 1", "OH 1", "MgH 1", "C2 1", "CN 1", "TiO 1"}
    assert mol["wave"].between(8468.0, 8942.0).all() and (mol["ionization"] == 1).all()
    # VALD scaled the log gf by the isotopic fraction: 13CH sits ≈ 1.95 dex below 12CH
    ch = mol[mol["species"] == "CH 1"]
    assert set(np.round(ch["code"], 6)) == {106.000012, 106.000013}
    assert np.median(ch.loc[ch["code"] > 106.0000125, "loggf"]) < np.median(ch.loc[ch["code"] < 106.0000125, "loggf"]) - 1.5

    off, on = pe.PysmeSettings(shared_data=str(shared_data)), pe.PysmeSettings(shared_data=str(shared_data),
                                                                               molecules=True)
    assert "molecules" not in off.to_dict() and on.to_dict()["molecules"] is True
    labels = {"teff": 4000, "logg": 1.0, "feh": 0, "mg_fe": 0, "al_fe": 0, "alpha_fe": 0, "vmic": 1.5}
    assert pe.cache_key(labels, off.to_dict()) != pe.cache_key(labels, on.to_dict())


@pytest.mark.slow
def test_molecules_deepen_a_cool_giant_not_the_sun(shared_data):
    """CN 8555.6 Å region at GIRAFFE R. Measured 2026-11-30 (bench_pysme_molecules.py and this window):
    max |Δflux| 0.109 for a 3900 K / 1.0 / 0.0 giant, 0.0085 for the Sun (where the real SAO2010 Sun
    shows the CN line: 0.973 against 0.996 without molecules, 0.986 with them)."""
    pytest.importorskip("pysme.synthesize", reason="pysme-astro not installed")
    from starlabel.grid import GIRAFFE_RESOLUTION
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock.engine import broaden, macroturbulence, microturbulence

    wave = np.arange(8552.0, 8559.0, 0.01)
    inner = slice(100, -100)
    off, on = pe.PysmeSettings(shared_data=str(shared_data)), pe.PysmeSettings(shared_data=str(shared_data),
                                                                               molecules=True)
    mol = pe.read_vald_molecules(shared_data / "linelists", [(8470.0, 8940.0), (5340.0, 5610.0)], 2.0)
    df_off, df_on = pe.linelist_frame(off), pe.linelist_frame(on)
    assert len(df_on) == len(df_off) + len(mol)
    assert np.all(np.diff(df_on["wave"].to_numpy()) >= 0)  # SME needs the list sorted
    assert pe.linelist_sha256(df_on) != pe.linelist_sha256(df_off)
    delta = {}
    for name, (t, g) in {"giant": (3900.0, 1.0), "sun": (5772.0, 4.44)}.items():
        lab = {"teff": t, "logg": g, "feh": 0.0, "mg_fe": 0.0, "al_fe": 0.0, "alpha_fe": 0.0,
               "vmic": float(microturbulence(t, g))}
        vmac = float(macroturbulence(t, g))
        f0, f1 = (broaden(pe.synthesize_window(lab, wave, s), wave, GIRAFFE_RESOLUTION["HR21"], vmac, 2.0)
                  for s in (off, on))
        assert np.all(f1[inner] <= f0[inner] + 1e-4)  # lines only absorb
        delta[name] = float(np.max(np.abs(f1 - f0)[inner]))
    assert delta["giant"] > 0.07, delta
    assert delta["sun"] < 0.015, delta
