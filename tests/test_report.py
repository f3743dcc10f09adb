"""The HTML report: self-contained, degrades gracefully, and renders in headless Chromium
with no broken image and no page error (checked the way a person would see it)."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from starlabel.stages.report import render, report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected into a copy of the page only: collects page errors and console.error calls from the
# start, and after `load` writes how many <img> failed to decode into the DOM that --dump-dom prints.
PROBE = """<script>
window.__errs=[];
window.addEventListener('error',function(e){window.__errs.push(e.message||('failed '+(e.target&&e.target.tagName)))},true);
(function(){var ce=console.error;console.error=function(){window.__errs.push('console.error '+[].join.call(arguments,' '));ce.apply(console,arguments)}})();
window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
var bad=im.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length;
var d=document.createElement('div');d.id='probe';
d.textContent='images='+im.length+' broken='+bad+' errors='+window.__errs.length+' '+window.__errs.join(' | ');
document.body.appendChild(d)});
</script>"""


@pytest.fixture
def run_dir(evaluated):
    """The evaluated fake run plus explain and map-figure outputs."""
    run, _ = evaluated
    ex = run / "explain"
    ex.mkdir(exist_ok=True)
    shutil.copy(run / "eval" / "loss_curves.png", ex / "gradients.png")
    (ex / "lines.csv").write_text("label,peak_wavelength,strength,species,line_wavelength,offset\n"
                                  "MG_FE,8736.05,0.8,Mg I,8736.02,0.03\n")
    mf = run / "map_figures"
    mf.mkdir(exist_ok=True)
    shutil.copy(run / "eval" / "abundance_maps.png", mf / "map_teff.png")
    shutil.copy(run / "eval" / "calibration_truth.png", mf / "outlier_C00239.png")
    return run


def _chromium(args, tmp_path, timeout=90):
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_page_is_self_contained(run_dir, tmp_path):
    out = report(run_dir, tmp_path / "report.html")
    page = out.read_text()
    assert page.count('src="data:image/png;base64,') >= 12
    external = re.findall(r'(?:src|href)="(?!data:|#)([^"]*)"', page)
    assert external == [], external
    assert "<link" not in page and "<script" not in page
    for text in ("bias", "MG_FE", "abc123", "Strongest narrow gradient peaks", "Flagged outlier spectra", "8736.02"):
        assert text in page, text
    assert "Not in this run: dataset.h5" in page  # the fake run has no dataset.h5


def test_empty_run_dir_degrades_gracefully(tmp_path):
    page = render(tmp_path)
    assert page.count('class="missing"') >= 5
    assert "starlabel evaluate" in page and "starlabel explain" in page


def test_missing_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report(tmp_path / "nope", tmp_path / "r.html")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium; CI installs it)")
@pytest.mark.slow
def test_report_renders_in_chromium(run_dir, tmp_path):
    from matplotlib.image import imread

    page = report(run_dir, tmp_path / "report.html").read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<meta charset=utf-8>", "<meta charset=utf-8>" + PROBE, 1))
    res = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom",
                     probed.as_uri()], tmp_path)
    m = re.search(r'<div id="probe">images=(\d+) broken=(\d+) errors=(\d+)([^<]*)', res.stdout)
    assert m, f"probe did not run; stderr:\n{res.stderr[-2000:]}"
    n_img, broken, errors = map(int, m.groups()[:3])
    assert n_img == page.count("<img ") and n_img >= 12
    assert broken == 0, f"{broken} broken image(s)"
    assert errors == 0, f"page errors: {m.group(4)}"
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln and ("ERROR" in ln or "Uncaught" in ln)]
    assert console == [], console

    shot = tmp_path / "report.png"
    res = _chromium(["--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,3000",
                     (tmp_path / "report.html").as_uri()], tmp_path)
    assert shot.exists() and shot.stat().st_size > 10_000, res.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1280) and np.std(pixels[..., :3]) > 0.05  # not a blank page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_probe_catches_a_broken_image(tmp_path):
    """The check itself works: a corrupt data URI is reported as broken."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta charset=utf-8>" + PROBE + "</head><body>"
                   '<img src="data:image/png;base64,AAAA"></body></html>')
    res = _chromium(["--virtual-time-budget=5000", "--dump-dom", bad.as_uri()], tmp_path)
    assert re.search(r"images=1 broken=1", res.stdout), res.stdout[-500:]


@pytest.mark.slow
def test_summary_leads_and_provenance_is_collapsed(run_dir):
    """What a scientist reads first comes first: counts, accuracy per label with its coverage, the map;
    the manifest and settings are at the end, closed."""
    page = render(run_dir)
    summary = page[page.index('<section id="summary">'):page.index('<section id="accuracy">')]
    assert "<b>240</b> of 240 spectra labelled" in summary
    assert "Accuracy per label" in summary and "within 1σ" in summary and "true labels" in summary
    for label in ("TEFF", "LOGG", "MG_FE", "AL_FE", "FE_H"):
        assert f"<td class=s>{label}</td>" in summary
    assert "Similarity map" in summary and summary.count("<img ") == 1
    assert page.index('<section id="provenance">') > page.index('<section id="gradients">')
    assert '<section id="provenance"><h2>Run settings and provenance</h2><details>' in page
    assert not re.search(r">-?\d\.\d+e-\d\d<", page)  # no raw exponents in tables
