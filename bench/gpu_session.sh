#!/usr/bin/env bash
# One prepared run for a lent GPU (its 15 minutes of device time are for all tries together): the tensor-core paths'
# tests, which only a device with subgroup matrices runs (lavapipe skips or emulates them), the FLOP audit with the
# same flags, rollouts with joins against fixed batches (bench/rollout.ts --joins-only), then every figure of
# bench/gpu.ts; each step is bounded so that the whole stays within one command's 600 s. Logs under $OUT (the
# device tool brings them back), else bench/results/gpu/. On the device:
#   source .gpu/enter.sh; bash bench/gpu_session.sh
# JUICE_BENCH_SMALL=1 runs it at small shapes (a dry run on lavapipe, where the emulated tests outlast their bound).
set -u
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"
export JUICE_DAWN_FLAGS="${JUICE_DAWN_FLAGS:-enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness disable-dawn-features=timestamp_quantization}"
# The vec4 matmul variants' share of the gpu_bench step (bench/gpu.ts stops them after this many seconds).
export JUICE_VEC4_SECONDS="${JUICE_VEC4_SECONDS:-45}"
uvu="node_modules/uvu/bin.js"
step() { # name, seconds, command...: each step bounded, its log kept, its exit code reported; a failure stops nothing
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - t0)) s (log $out/$name.log)"
}
echo "flags: $JUICE_DAWN_FLAGS"
step tensor_core_tests 100 node --import tsx "$uvu" test/kernels 'tensor_core'
step audit_tests 90 node --import tsx "$uvu" test/models 'audit'
step decode_host 25 node --import tsx bench/decode_host.ts
step optimizer 30 node --import tsx bench/optimizer.ts --steps 5
step rollout_joins 20 node --import tsx bench/rollout.ts --reps 2 --joins-only
step gpu_bench 330 node --import tsx bench/gpu.ts
tail -1 "$out/decode_host.log"
tail -1 "$out/optimizer.log"
grep '^joins' "$out/rollout_joins.log"
grep -A200 '^summary' "$out/gpu_bench.log"
grep -hE 'FAIL|✘' "$out"/*.log | head -20
