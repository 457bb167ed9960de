#!/usr/bin/env bash
# The main job end to end on built-in defaults (no download, no network), in a few minutes on 2 cores:
# simulate LeNet-5 on two hardware profiles, train it under energy budgets on the built-in digits
# data with the paper's method and with magnitude pruning, and plot the energy-accuracy curves.
set -euo pipefail
out=${ECC_DEMO_OUT:-demo_output}
mkdir -p "$out"

echo "== 1. Hardware profiles shipped with the package"
ecc profiles
echo
echo "== 2. LeNet-5 on a 16x16 edge accelerator (cycle-level systolic estimator), with conv2's utilization trace"
ecc simulate --model lenet5 --profile edge-16x16 --weight-density 0.3 --trace conv2 \
    --plot "$out/lenet5_edge16x16_energy" --json "$out/lenet5_edge16x16.json"
echo
echo "== 3. The same model under the ICLR 2019 analytic energy model"
ecc simulate --model lenet5 --profile eyeriss-iclr19 --estimator paper --json "$out/lenet5_paper.json"
echo
echo "== 4. Energy-constrained training on digits: weighted sparse projection (ecc) vs magnitude pruning"
sweep="$out/sweep"
ecc sweep --model lenet5 --dataset digits --profile eyeriss-iclr19 --estimator paper \
    --budgets 0.5,0.3,0.2 --methods ecc,magnitude --seeds 0 --epochs 5 --pretrain-epochs 8 \
    --jobs 2 --out "$sweep"
echo
echo "== 5. Figures"
ecc plot "$sweep"
echo
echo "Done. Results table: $sweep/results.csv; energy-accuracy curve: $sweep/figures/energy_accuracy.png;"
echo "per-layer energy: $out/lenet5_edge16x16_energy.png; utilization timeline: $out/lenet5_edge16x16_energy_timeline_conv2.png"
