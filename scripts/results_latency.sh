#!/usr/bin/env bash
# Regenerates "Latency budgets beside energy budgets (issue 14)" of docs/results.md: lenet5 on the
# real Fashion-MNIST on edge-16x16, tile structure, ecc vs magnitude, energy budgets 0.5, 0.35, 0.2
# crossed with latency budgets 0.6, 0.4, 0.25, seeds 0, 1, 2. Schedule: 3 dense epochs, then 2
# epochs of projected SGD (batch 128, a projection every 50 batches). A cell took 1-9 min on the
# shared 2-core machine (load ~18), so one session finished 26 of the 54 cells; running it again
# on the same folder resumes. Needs `apt-get install dataset-fashion-mnist`.
set -euo pipefail
out=${1:-results}
ecc=${ECC:-.venv/bin/ecc}
$ecc sweep --model lenet5 --dataset fashion-mnist --profile edge-16x16 --estimator systolic \
  --methods magnitude,ecc --structures tile --budgets 0.5,0.35,0.2 --latency-budgets 0.6,0.4,0.25 \
  --seeds 0,1,2 --pretrain-epochs 3 --epochs 2 --batch-size 128 --proj-interval 50 --jobs 1 --quiet \
  --out "$out/latency-fmnist-16"
$ecc plot "$out/latency-fmnist-16"
