#!/usr/bin/env bash
# The main job end to end on built-in defaults (no download, no network).
set -euo pipefail
out=${ECC_DEMO_OUT:-demo_output}
mkdir -p "$out"
echo "== Hardware profiles shipped with the package"
ecc profiles
echo
echo "== The paper's profile, resolved with defaults"
ecc profiles --show eyeriss-iclr19 --json "$out/eyeriss-iclr19.json"
echo
echo "Outputs are in $out/"
