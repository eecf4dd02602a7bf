#!/usr/bin/env bash
# A fresh venv with `pip install .` (no extras): no PyTorch, and parnet-bench runs a prebuilt export.
# Usage: scripts/check_bare_install.sh EXPORT_DIR [VENV_DIR]   (EXPORT_DIR: written by parnet-export)
set -euo pipefail
export_dir=$(cd "$1" && pwd)
venv=${2:-$(mktemp -d)/venv}
repo=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "$repo"
echo "installed: $("$venv/bin/python" -m pip list --format=freeze | grep -iE '^(numpy|onnx|onnxruntime|openvino|torch)==' | tr '\n' ' ')"
"$venv/bin/python" - <<'PY'
import importlib.util, sys
sys.exit("torch is installed" if importlib.util.find_spec("torch") else 0)
PY
echo "torch: not installed"
cd "$(mktemp -d)"
"$venv/bin/parnet-bench" --engine "$export_dir" --backend openvino --mode streams --warmup 0.1 --iterations 5 --duration 0.2
"$venv/bin/parnet-build" "$export_dir" --output engines
"$venv/bin/parnet-bench" --engine "engines/$(basename "$export_dir")" --warmup 0.1 --iterations 5 --duration 0.2
set +e
"$venv/bin/parnet-export" /nonexistent.pt 2>err.txt; code=$?
set -e
cat err.txt
test "$code" = 2 && grep -q "pip install 'parnet-deploy\[export\]'" err.txt
echo "bare install: OK"
