#!/usr/bin/env bash
# One-time set-up, called by `make` on first use: .venv with the pinned dependencies, the project on the venv's
# path, and Debian's darknet when we may install it. Idempotent; the Makefile's stamp file skips it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# The pinned torch is a CUDA build of about 5.6 GB in the venv; pip fails half-way without that room (seen: a CI
# clone on a nearly full disk), so say so up front, in one line.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt 8 ]; then
    echo "[setup] only ${free_gb} GB free on $(df -P . | awk 'NR==2 {print $6}'); the pinned packages need about 8 GB (torch is a CUDA build). Free some space and run make again."
    exit 1
  fi
fi
echo "[setup] installing pinned Python packages (torch is a CUDA build from local disk; it runs on the CPU)"
# (this machine's pip config lists an extra local index whose missing folders pip warns about, one line each)
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python -c "import torch, ultralytics, cv2, onnxruntime" 2>/dev/null \
  || { echo "[setup] package install failed (see pip's message above); run make again once it is fixed"; exit 1; }
# The project itself: an editable install (pyproject.toml), which also puts the `emodet` command in .venv/bin;
# `python eval/confusion.py` and `python -m converters.convert` import converters/, eval/, scripts/ through it.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
  | grep -v "is ignored: it is neither" || true
.venv/bin/python -c "import converters, scripts.cli" 2>/dev/null \
  || { echo "[setup] the editable install of the project failed (see pip's message above)"; exit 1; }
if ! command -v darknet >/dev/null 2>&1 && [ -z "${DARKNET:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian's darknet (pjreddie 2018, CPU)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq darknet >/dev/null) \
      || echo "[setup] could not install darknet; Darknet steps will be skipped. Try: sudo apt-get install -y darknet"
  else
    echo "[setup] darknet not found; Darknet steps will be skipped. Install it with: sudo apt-get install -y darknet"
  fi
fi
# AlexeyAB Darknet (the published recipe's engine) from the source tarball beside the project, about 30 s; without
# one, a line says how to build it from a clone (`make darknet DARKNET_SRC=...`)
.venv/bin/python -m scripts.darknet_build --if-available || echo "[setup] the AlexeyAB Darknet build failed (see above); Darknet steps use pjreddie's if installed"
# Headless Chromium for the web app's browser test and README screenshot (tests skip with the reason without it)
if ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian's chromium and chromium-driver (the app's browser test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "[setup] could not install chromium; the browser test will be skipped. Try: sudo apt-get install -y chromium chromium-driver"
  else
    echo "[setup] chromium not found; the browser test will be skipped. Install it with: sudo apt-get install -y chromium chromium-driver"
  fi
fi
echo "[setup] done"
