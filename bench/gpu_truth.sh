#!/bin/sh
# Truth check on a machine with an NVIDIA GPU: the agent's readings against nvidia-smi.
# Usage: bench/gpu_truth.sh [--duration SECONDS]   (run from a checkout with dsagent installed)
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m bench.gpu_truth "$@"
