#!/usr/bin/env bash
# The eleventh session's second call (repository root on the GPU host, .gpu carried; README.md
# says what each kernel set was): the tree's kernels (cand) against .gpu/kbase, twice,
# alternating, with .gpu/kv7 in the second pass; the split sweep at 32K with all three; the tests
# on NVIDIA with the tree's kernels.
set -u
R=$OUT/r; mkdir -p $R
. .gpu/nvidia-opencl-env.sh > $R/clinfo.txt 2>&1
t0=$SECONDS
log() { echo "[$((SECONDS - t0)) s] $*" | tee -a $R/steps.txt; }
pack() { tar -czf $OUT/r0.tgz -C $OUT r; }
{ date -u; nvidia-smi; git log -1 --format=%H; git status --short; } > $R/device.txt 2>&1
export CMAKE_PREFIX_PATH=$PWD/.gpu/hwy/usr LD_LIBRARY_PATH=$PWD/.gpu/hwy/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
log build
{ cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build -j16 --target test_opencl opencl_attention_bench; } > $R/build.txt 2>&1 || { log "build failed"; tail -30 $R/build.txt; }
export KVARN_CL_PLATFORM=NVIDIA KVARN_CL_CACHE=0
bench() {  # NAME KERNEL_DIR(or empty) FILTER
  env ${2:+KVARN_CL_KERNEL_DIR=$PWD/$2} timeout 120 build/benchmarks/opencl_attention_bench --benchmark_filter="$3" \
    --benchmark_out=$R/$1.json --benchmark_out_format=json > $R/$1.txt 2>&1
  log "$1 rc $?"
}
F='BM_Fused/Llama3_8B/ctx(4096/batch1|32768/batch(1|8|64)|131072/batch(1|8))/'
log bench
bench cand1 "" "$F"; bench base1 .gpu/kbase "$F"; pack
S='BM_SlotSplits/Llama3_8B/ctx32768/'
bench splits_cand "" "$S"; bench splits_kv7 .gpu/kv7 "$S"; bench splits_base .gpu/kbase "$S"; pack
bench cand2 "" "$F"; bench base2 .gpu/kbase "$F"; bench kv7_2 .gpu/kv7 "$F"; pack
log tests
timeout 150 build/test/test_opencl --gtest_filter='OpenCL/FusedAttend.*:OpenCL/Fp16Attend.*:OpenCLNvidiaMmaSync.*' > $R/test_opencl.txt 2>&1
log "tests rc $?"
grep -E "^\[  FAILED|PASSED|tests ran" $R/test_opencl.txt | head
tar -czf $OUT/r.tgz -C $OUT r && rm -rf $R $OUT/r0.tgz
