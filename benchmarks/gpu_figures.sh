#!/usr/bin/env bash
# Every GPU figure of the training engine in one command, for a short loan of one GPU machine:
#   STSTNet 68 folds x 800 epochs fold-batched against the per-fold loop (loso_speed.py), then
#   MobileViTv3-XXS 68 folds x 100 epochs at 64 px, all folds at once, against its per-fold
#   loop on the same GPU (fold_batched.py), then what making a step's batches costs for 68 folds,
#   all folds' transforms at once against fold by fold (batch_assembly.py). Targets: STSTNet
#   under 1 minute; MobileViTv3-XXS under 3 minutes and at least 10x its per-fold loop.
#
#   bash benchmarks/gpu_figures.sh                # on the GPU machine, from the repository root
#   DEVICE=cpu PRECISION=bf16 QUICK=1 bash benchmarks/gpu_figures.sh   # a smoke run on a CPU
#
# The smoke run takes the GPU's code path on the CPU: STSTNet fold-batched by vmap (not the
# CPU's fused kernel) and both models under bf16 autocast, the GPU's default precision.
#
# Needs torch (any CUDA build), numpy, pandas, scikit-learn, safetensors and tqdm; mekit runs
# from src/ (no install). Each step has its own time limit, so one slow step cannot eat the
# loan (240 + 300 + 45 s: within one 600-second call); logs go to $OUT (default gpu_out/).
set -u -o pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-auto}
PY=${PYTHON:-python3}
mkdir -p "$OUT"

if [ "${QUICK:-0}" = 1 ]; then
  ststnet=(--epochs 2 --folds 3 --plain-folds 1 --batched)
  mobilevit=(--epochs 1 --folds 2 --plain-folds 1)
  assembly=(--folds 4 --rounds 2)
else
  ststnet=(--plain-folds 2)
  mobilevit=(--folds 68 --epochs 100 --plain-folds 1)
  assembly=()
fi

{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; "$PY" -c \
  "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  | tee "$OUT/device.txt"

status=0
timeout "${STSTNET_LIMIT:-240}" "$PY" benchmarks/loso_speed.py --device "$DEVICE" \
  --precision "$PRECISION" "${ststnet[@]}" 2>&1 | tee "$OUT/ststnet.txt" || status=1
timeout "${MOBILEVIT_LIMIT:-300}" "$PY" benchmarks/fold_batched.py --device "$DEVICE" \
  --precision "$PRECISION" --model mobilevitv3_xxs "${mobilevit[@]}" 2>&1 \
  | tee "$OUT/mobilevit.txt" || status=1
timeout "${ASSEMBLY_LIMIT:-45}" "$PY" benchmarks/batch_assembly.py --device "$DEVICE" \
  "${assembly[@]}" 2>&1 | tee "$OUT/assembly.txt" || status=1
exit $status
