#!/usr/bin/env bash
# Install PyTorch into the given Python environment without pulling a multi-GB CUDA build onto a machine
# that has no NVIDIA GPU.
#   - torch already importable (Colab, a conda env, a previous run): keep it.
#   - an NVIDIA GPU is present: the default PyPI build, which ships CUDA.
#   - no GPU: a CPU wheel from a local wheel folder when pip is configured with one (find-links), else
#     PyTorch's CPU-only index.
# Override the version with LABKIT_TORCH_VERSION (default 2.13.0 for the CPU wheel).
set -euo pipefail
python="${1:-python3}"
pip=("$python" -m pip install --quiet --disable-pip-version-check)

if "$python" -c "import torch" 2>/dev/null; then
    echo "torch $("$python" -c 'import torch; print(torch.__version__)') is already installed: keeping it."
    exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA build of torch from PyPI."
    "${pip[@]}" "torch>=2.1"
    exit 0
fi

version="${LABKIT_TORCH_VERSION:-2.13.0}"
case "$(uname -s)" in
    Darwin)
        # macOS wheels are CPU/MPS builds already.
        "${pip[@]}" "torch>=2.1"
        ;;
    *)
        # --no-index: only a local wheel folder (pip's find-links) can answer, so nothing large is downloaded.
        if "${pip[@]}" --no-index --no-deps "torch==${version}" 2>/dev/null; then
            echo "Installed the local CPU wheel of torch ${version}."
            "${pip[@]}" "torch==${version}"   # its small pure-Python dependencies
        else
            echo "No local torch wheel: installing the CPU-only build from PyTorch's CPU index."
            "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu \
                --extra-index-url https://pypi.org/simple
        fi
        ;;
esac
