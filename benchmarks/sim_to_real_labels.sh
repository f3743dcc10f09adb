#!/usr/bin/env bash
# The same mock stars rendered with both engines, one quick-preset network per mock (both setups and
# HR21 only), then the real Sun and the real GES HR21 star through all four (README "Sim-to-real:
# labels of the real Sun").   benchmarks/sim_to_real_labels.sh OUT_DIR [N_STARS]
set -euo pipefail
out="${1:?usage: sim_to_real_labels.sh OUT_DIR [N_STARS]}"; n="${2:-3000}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(dirname "$here")"
sl="${STARLABEL:-$root/.venv/bin/starlabel}"; py="${PYTHON:-$root/.venv/bin/python}"
train=(--preset quick --runs 1 --keep 1 --max-epochs 40 --mask-setups 0 --seed 0 --no-progress --threads 1)
models=()
for engine in onelayer emulator; do
  r="$out/$engine"
  "$sl" synth survey --out "$r/survey" --n-stars "$n" --seed 0 --engine "$engine" --workers 1 --no-progress
  for grid in GES HR21; do
    "$sl" prepare "$r/survey/catalogue.fits" "$r/survey/spectra" --grid "$grid" --out "$r/dataset_$grid.h5" --no-progress
    "$sl" select "$r/dataset_$grid.h5" --out "$r/sets_$grid.h5"
    "$sl" train "$r/sets_$grid.h5" --out "$r/model_$grid" "${train[@]}"
    models+=("$r/model_$grid")
  done
done
PYTHONPATH="$root/src" "$py" "$here/bench_real_labels.py" "${models[@]}"
