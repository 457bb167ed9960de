#!/usr/bin/env bash
# Regenerates the vit_tiny section of docs/results.md (issue 16; about 45 minutes on a quiet
# 2-core machine): the full Fashion-MNIST set (60,000 training, 10,000 test images), 5 dense
# epochs, then 5 epochs of projected SGD, batch 64, 3 seeds. Needs `apt-get install dataset-fashion-mnist`.
set -euo pipefail
out=${1:-results}
py=".venv/bin/python"
.venv/bin/ecc sweep --model vit_tiny --dataset fashion-mnist --profile edge-16x16 \
  --pretrain-epochs 5 --epochs 5 --batch-size 64 --budgets 0.5,0.48,0.47 --methods ecc,magnitude --seeds 0,1,2 \
  --jobs 2 --threads 1 --quiet --out "$out/vit-fmnist"
.venv/bin/ecc plot "$out/vit-fmnist" --budget 0.47
$py scripts/vit_attention_energy.py "$out/vit-fmnist"
