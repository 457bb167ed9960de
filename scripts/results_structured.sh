#!/usr/bin/env bash
# Regenerates the tile-structured sweeps of docs/results.md ("Tile-structured pruning on a
# systolic array"): lenet5 on digits and on the real Fashion-MNIST, on edge-16x16 and on the
# same array at 32x32 (--set array.rows=32 --set array.cols=32), methods ecc and magnitude x
# structures none, tile, hybrid, 3 seeds. Needs `apt-get install dataset-fashion-mnist` for
# the Fashion-MNIST sweeps. Run after `make test` has created .venv; 54 min to 1.5 h on 2 cores.
set -euo pipefail
out=${1:-results}
ecc=".venv/bin/ecc"
common=(--model lenet5 --profile edge-16x16 --estimator systolic --methods ecc,magnitude
        --structures none,tile,hybrid --seeds 0,1,2 --jobs 2 --quiet)
big=(--set array.rows=32 --set array.cols=32)
$ecc sweep "${common[@]}" --dataset digits --budgets 0.5,0.3,0.2,0.15,0.12 \
  --epochs 5 --pretrain-epochs 10 --out "$out/tiles-digits-16"
$ecc sweep "${common[@]}" --dataset fashion-mnist --budgets 0.5,0.3,0.2,0.12 \
  --epochs 2 --pretrain-epochs 3 --out "$out/tiles-fmnist-16"
$ecc sweep "${common[@]}" "${big[@]}" --dataset digits --budgets 0.5,0.3,0.2,0.15,0.12 \
  --epochs 5 --pretrain-epochs 10 --out "$out/tiles-digits-32"
$ecc sweep "${common[@]}" "${big[@]}" --dataset fashion-mnist --budgets 0.3,0.2,0.12 \
  --epochs 2 --pretrain-epochs 3 --out "$out/tiles-fmnist-32"
for d in tiles-digits-16 tiles-fmnist-16 tiles-digits-32 tiles-fmnist-32; do $ecc plot "$out/$d"; done
# below 0.12 on edge-16x16 (structured only): 0.11 is reachable, 0.10 is not (one tile per layer)
$ecc sweep "${common[@]}" --structures tile,hybrid --dataset digits --budgets 0.11,0.1 \
  --epochs 5 --pretrain-epochs 10 --out "$out/tiles-digits-16-low"
