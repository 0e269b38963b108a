#!/usr/bin/env bash
# Builds libkvarn_cl on a GPU host, runs the test suites against the GPU's OpenCL, then the
# benchmarks, and leaves logs and Google Benchmark JSON in OUT (default ./device-results).
#
#   . .gpu/nvidia-opencl-env.sh; bash benchmarks/run_device.sh "$OUT"
#
# The build needs Highway (libhwy-dev). On a host without it and without a package manager that
# reaches Debian, unpack Debian's libhwy-dev and libhwy1 .debs (dpkg -x) into a folder and export
# CMAKE_PREFIX_PATH=<folder>/usr and LD_LIBRARY_PATH=<folder>/usr/lib/x86_64-linux-gnu first.
#
# KVARN_CL_PLATFORM selects the platform (default: NVIDIA). Set KVARN_RUN_TESTS=0 or
# KVARN_RUN_BENCH=0 to skip a phase, KVARN_RUN_DECODE_AB=0 the portable-decode A/B, KVARN_RUN_TORCH=0 the PyTorch baselines
# (benchmarks/torch_sdpa_bench.py, benchmarks/torch_model_step_bench.py; KVARN_TORCH_BUDGET_GB sets
# the latter's capacity budget); KVARN_TEST_FILTER (ctest -R), KVARN_BENCH_FILTER and
# KVARN_BENCH_ONLY (a glob of benchmark executables) narrow them.
set -u
out=${1:-device-results}
mkdir -p "$out"
export KVARN_CL_PLATFORM=${KVARN_CL_PLATFORM:-NVIDIA}
jobs=$(nproc 2>/dev/null || echo 4)

{
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null
  clinfo -l 2>/dev/null
  # The device gets a copy of the tree without .git: the caller passes the commit.
  echo "commit: ${KVARN_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
} > "$out/device.txt" 2>&1

cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release > "$out/build.log" 2>&1 &&
  cmake --build build-device -j"$jobs" >> "$out/build.log" 2>&1 || {
    echo "build failed"; tail -50 "$out/build.log"; exit 1; }

# What the device reports and which kernel variant each family runs there, with the capability
# checks' verdicts (nvidia_mma_sync, subgroups, denormal_decode and its rate check). It builds the
# kernels on every platform the loader lists, PoCL's first where it is registered too (minutes on
# the GPU host): give it no short timeout, or NVIDIA's lines never come.
build-device/tools/kvarn-cl/kvarn-cl info > "$out/info.txt" 2>&1
grep -E "variants|decode|attention:|reductions" "$out/info.txt" | cut -c1-240

if [ "${KVARN_RUN_TESTS:-1}" = 1 ]; then
  (cd build-device && ctest --output-on-failure -j1 --timeout 600 -R "${KVARN_TEST_FILTER:-.}") > "$out/tests.log" 2>&1
  echo "tests: exit $?"; grep -E "tests passed|Failed|\*\*\*" "$out/tests.log" | tail -20
fi

if [ "${KVARN_RUN_BENCH:-1}" = 1 ]; then
  # What users would pick instead, in the same run (each skips itself without torch + CUDA):
  # PyTorch fp16 SDPA per layer (kernel-only, CUDA graph and per-call times) and a 32-layer fp16
  # decode step (KV write + SDPA per layer: eager wall, kernel-only, CUDA graph; the capacity view
  # at KVARN_TORCH_BUDGET_GB of KV memory, default 60).
  if [ "${KVARN_RUN_TORCH:-1}" = 1 ]; then
    python3 benchmarks/torch_sdpa_bench.py "$out/torch_sdpa_bench.json" > "$out/torch_sdpa_bench.txt" 2>&1
    echo "torch_sdpa_bench: exit $?"; tail -40 "$out/torch_sdpa_bench.txt"
    python3 benchmarks/torch_model_step_bench.py "$out/torch_model_step_bench.json" \
      --budget-gb "${KVARN_TORCH_BUDGET_GB:-60}" > "$out/torch_model_step_bench.txt" 2>&1
    echo "torch_model_step_bench: exit $?"; tail -25 "$out/torch_model_step_bench.txt"
  fi
  for b in build-device/benchmarks/*_bench; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    case "$name" in cpu_*) continue ;; esac  # CPU benchmarks belong to CPU machines
    case "$name" in ${KVARN_BENCH_ONLY:-*}) ;; *) continue ;; esac
    "$b" --benchmark_filter="${KVARN_BENCH_FILTER:-.}" --benchmark_counters_tabular=true \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json > "$out/$name.txt" 2>&1
    echo "$name: exit $?"; tail -40 "$out/$name.txt"
  done
  # The portable tile-slot kernel with the portable decode beside the run's default (the
  # denormal_decode variant where its checks pass; docs/PORTABILITY.md) at issue 17's item-6
  # shapes: opencl_attention_bench's slots_kernel_us of both files, same device, same run.
  ab=build-device/benchmarks/opencl_attention_bench
  if [ "${KVARN_RUN_DECODE_AB:-1}" = 1 ] && [ -x "$ab" ]; then
    KVARN_CL_DENORMAL_DECODE=0 "$ab" \
      --benchmark_filter='BM_Fused/(Llama3_8B/ctx(32768/batch(8|64)|131072/batch8)|MHA/ctx32768/batch8)/' \
      --benchmark_counters_tabular=true --benchmark_out="$out/opencl_attention_bench_portable_decode.json" \
      --benchmark_out_format=json > "$out/opencl_attention_bench_portable_decode.txt" 2>&1
    echo "opencl_attention_bench (KVARN_CL_DENORMAL_DECODE=0): exit $?"
    tail -12 "$out/opencl_attention_bench_portable_decode.txt"
  fi
fi
