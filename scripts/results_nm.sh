#!/usr/bin/env bash
# Regenerates the N:M sweeps of docs/results.md ("N:M-sparse array nm-32x32"): lenet5 on
# digits and on the real Fashion-MNIST on nm-32x32 (32x32 WS, 2:4, bitmask weights for layers
# that are not N:M, tile skipping on), methods ecc and magnitude x structures none, nm, tile,
# 3 seeds. Budgets from 0.65 (ASP, magnitude+nm, has nothing below ~0.61) down to just above the
# tile floor (0.136); a cell below its structure's floor is recorded as not reachable. Needs
# `apt-get install dataset-fashion-mnist`. ECC=... selects the entry point (default:
# .venv/bin/ecc, created by `make test`). About 1.5 h on 2 shared cores.
set -euo pipefail
out=${1:-results}
ecc=${ECC:-.venv/bin/ecc}
common=(--model lenet5 --profile nm-32x32 --estimator systolic --methods ecc,magnitude
        --structures none,nm,tile --jobs 2 --quiet)
$ecc sweep "${common[@]}" --seeds 0,1,2 --dataset digits --budgets 0.65,0.5,0.4,0.3,0.26,0.2,0.15 \
  --epochs 5 --pretrain-epochs 10 --out "$out/nm-digits"
# Fashion-MNIST: a shorter schedule (2 dense epochs, 1 of projected SGD, batches of 128, a
# projection every 50 batches) and four budgets; one seed after the other, so seeds finish whole.
for seed in 0 1 2; do
  $ecc sweep "${common[@]}" --seeds $seed --dataset fashion-mnist --budgets 0.65,0.3,0.2,0.15 \
    --epochs 1 --pretrain-epochs 2 --batch-size 128 --proj-interval 50 --out "$out/nm-fmnist"
done
for d in nm-digits nm-fmnist; do $ecc plot "$out/$d"; done
