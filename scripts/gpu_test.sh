#!/usr/bin/env bash
# make gpu-test: the GPU suite (pytest -m "gpu or gpus or tensorrt") and the GPU Table 3, on a
# machine with an NVIDIA GPU and a CUDA build of PyTorch. Installs what the project needs and
# this Python lacks, into this Python, never replacing its torch (pinned by a constraint).
# Offline: put wheels in $WHEELS (default .whl/ when it exists) and they are used instead of an index.
# Results: benchmarks/results/gpu_table3_<gpu>.{json,md} (or $GPU_RESULTS); GPU_TABLE3_ARGS="--arch parnet_s
# --rounds 2" for a shorter table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" - <<'PYEOF' || exit 2
import sys
try:
    import torch
except ImportError:
    sys.exit("make gpu-test: this Python has no PyTorch; install a CUDA build of torch first (PYTHON=... to pick another)")
if not torch.cuda.is_available():
    sys.exit(f"make gpu-test: torch {torch.__version__} sees no CUDA device (a CPU build, or no NVIDIA driver/GPU)")
print(f"make gpu-test: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
PYEOF

"$PY" -m pip --version > /dev/null 2>&1 || "$PY" -m ensurepip --upgrade > /dev/null
wheels=${WHEELS:-.whl}
source=()
[ -d "$wheels" ] && source=(--no-index --find-links "$wheels") || source=(--retries 1 --timeout 15)
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$PY" -c 'import torch; print(f"torch=={torch.__version__}")' > "$constraints"
missing=$("$PY" scripts/gpu_missing.py pyproject.toml)
if [ -n "$missing" ]; then
    echo "make gpu-test: installing $(echo "$missing" | tr '\n' ' ')(torch stays: $(cat "$constraints"))"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q "${source[@]}" -c "$constraints" $missing || {
        echo "make gpu-test: could not install $(echo "$missing" | tr '\n' ' ')into $PY (offline? put their" \
             "wheels in .whl/ or \$WHEELS; an externally managed Python? use a venv with its CUDA torch)" >&2
        exit 2
    }
fi
optional=$("$PY" scripts/gpu_missing.py pyproject.toml --extra gpu)
if [ -n "$optional" ]; then
    # shellcheck disable=SC2086
    "$PY" -m pip install -q "${source[@]}" -c "$constraints" $optional \
        || echo "make gpu-test: $(echo "$optional" | tr '\n' ' ')not installed; the TensorRT tests skip and say why"
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
"$PY" -m pytest -q -m "gpu or gpus or tensorrt" -p no:cacheprovider tests || status=$?
# shellcheck disable=SC2086
"$PY" benchmarks/gpu_table3.py --output "${GPU_RESULTS:-benchmarks/results}" ${GPU_TABLE3_ARGS:-} || status=$?
exit $status
