#!/usr/bin/env bash
# Regenerates the vit_tiny section of docs/results.md (issue 16; about 35 minutes on a loaded
# 2-core machine). Reduced run: the first 10,000 Fashion-MNIST training images (all 10,000 test
# images), 3 dense epochs and 2 pruning epochs, batch 64. Needs `apt-get install dataset-fashion-mnist`.
set -euo pipefail
out=${1:-results}
py=".venv/bin/python"
subset="$out/fashion-mnist-10k"
mkdir -p "$subset"
$py - "$subset" <<'PY'
import sys
from pathlib import Path
import numpy as np
from compress.data import FASHION_MNIST_ROOT, read_idx
out = Path(sys.argv[1])
for stem, n in [("train-images-idx3-ubyte", 10000), ("train-labels-idx1-ubyte", 10000),
                ("t10k-images-idx3-ubyte", None), ("t10k-labels-idx1-ubyte", None)]:
    a = read_idx(next(p for p in FASHION_MNIST_ROOT.iterdir() if p.name.startswith(stem)))[:n]
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    (out / stem).write_bytes(header + a.astype(np.uint8).tobytes())
PY
.venv/bin/ecc sweep --model vit_tiny --dataset fashion-mnist --data-root "$subset" --profile edge-16x16 \
  --pretrain-epochs 3 --epochs 2 --batch-size 64 --budgets 0.5,0.47 --methods ecc,magnitude --seeds 0,1,2 \
  --jobs 2 --threads 1 --quiet --out "$out/vit-fmnist"
.venv/bin/ecc plot "$out/vit-fmnist" --budget 0.47
$py scripts/vit_attention_energy.py "$out/vit-fmnist"
