#!/usr/bin/env bash
# Regenerates the sweeps behind docs/results.md (about an hour on 2 cores; needs
# `apt-get install dataset-fashion-mnist` for the last one). Run after `make demo` or `make test`
# has created .venv. Figures land in each sweep directory's figures/.
set -euo pipefail
out=${1:-results}
ecc=".venv/bin/ecc"
$ecc sweep --model lenet5 --dataset digits --profile eyeriss-iclr19 --estimator paper \
  --budgets 0.5,0.3,0.2,0.15,0.1 --methods ecc,ecc-mask,magnitude,uniform,energy-aware --seeds 0,1,2 \
  --epochs 10 --pretrain-epochs 10 --jobs 2 --quiet --out "$out/digits-paper"
$ecc sweep --model lenet5 --dataset digits --profile edge-16x16 --estimator systolic \
  --budgets 0.6,0.5,0.4,0.3,0.25 --methods ecc,ecc-mask,magnitude,uniform,energy-aware --seeds 0,1,2 \
  --epochs 10 --pretrain-epochs 10 --jobs 2 --quiet --out "$out/digits-systolic"
$ecc sweep --model lenet5 --dataset fashion-mnist --profile eyeriss-iclr19 --estimator paper \
  --budgets 0.5,0.3,0.2 --methods ecc,ecc-mask,magnitude,energy-aware --seeds 0 \
  --epochs 3 --pretrain-epochs 5 --mask-epochs 2 --max-rounds 2 --jobs 2 --quiet --out "$out/fmnist-paper"
for d in digits-paper digits-systolic fmnist-paper; do $ecc plot "$out/$d"; done
