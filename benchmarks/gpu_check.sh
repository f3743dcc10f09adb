#!/usr/bin/env bash
# One-command GPU check (issue 15 §4): trains one paper-preset run on CUDA and times inference there.
#   benchmarks/gpu_check.sh [--max-epochs N] [--n-infer N]      (arguments go to gpu_check.py)
# Exits 0 with a message, doing nothing, where torch sees no CUDA device.
# Uses $PYTHON (default: the repository's .venv, else python3) with the repository's src/ on the path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: skipped, torch sees no CUDA device on $(hostname)"
    exit 0
fi
exec "$py" "$here/gpu_check.py" "$@"
