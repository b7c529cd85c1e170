#!/usr/bin/env bash
# Create the virtual environment and install repro with the exact versions CI tests
# (constraints/ci.txt). Uses uv (20-30 s for the 5.7 GB torch stack) and the machine's
# pip indexes/find-links when it has them (local wheel caches), else plain PyPI.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q "uv==0.13.9" || "$PYTHON" -m pip install -q uv
fi
UV=$(command -v uv || echo "$PYTHON -m uv")

flags=()
for idx in $("$PYTHON" -m pip config get global.extra-index-url 2>/dev/null || true); do
  flags+=(--extra-index-url "$idx")
done
for fl in $("$PYTHON" -m pip config get global.find-links 2>/dev/null || true); do
  flags+=(--find-links "$fl")
done
[ ${#flags[@]} -gt 0 ] && flags+=(--index-strategy unsafe-best-match)

[ -x "$VENV/bin/python" ] || $UV venv -q -p "$PYTHON" "$VENV"
# --compile-bytecode: some machines set PYTHONDONTWRITEBYTECODE, and without .pyc files
# every process recompiles torch/lightning on import (~15 s of CPU each).
$UV pip install -q --compile-bytecode -p "$VENV/bin/python" "${flags[@]}" -c constraints/ci.txt -e ".[test]"
echo "installed repro into $VENV"
