#!/usr/bin/env bash
# Set up a virtual environment with everything lift3d needs, on a fresh machine.
# - Debian's libusb-1.0-0 (open3d needs it) when missing and we are root.
# - torch==2.13.0 first, only when no torch is importable (a range would pull CUDA builds);
#   an existing torch is never replaced.
# - then the package itself in editable mode with the [dev] extra.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LIFT3D_VENV:-.venv}"
PY_BOOT="${PYTHON:-python3}"

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[setup] installing libusb-1.0-0 (needed by open3d)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "[setup] warning: libusb-1.0-0 is missing and we are not root; open3d will not import." >&2
    echo "[setup]          install it with: sudo apt-get install libusb-1.0-0" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==2.13.0 (CPU build where the local index provides it)"
  $PIP install -q "torch==2.13.0"
fi
echo "[setup] installing lift3d and its dependencies"
$PIP install -q -e ".[dev]"
"$VENV/bin/python" -c "import lifting, pipelines, torch, open3d, apache_beam" \
  || { echo "[setup] error: the environment does not import; see messages above" >&2; exit 1; }
touch "$VENV/.lift3d-installed"
echo "[setup] done: $VENV"
