#!/usr/bin/env bash
# The eleventh session's call (run from the repository root on the GPU host, .gpu carried; README.md
# says how each kernel folder was made). Builds once, then
#   1. the attention benchmark at batch 1-4, alternating this tree's kernels (head), the candidate
#      .gpu/kv4 and b6eabce's kernels (.gpu/kold), twice;
#   2. the tile-slot split sweep (BM_SlotSplits) with this tree's kernels and two probes that give
#      wrong results on purpose, to time a part by leaving it out: .gpu/kv5 (no query rotation)
#      and .gpu/kv6 (no in-kernel merge of the splits);
#   3. FusedAttend and the policy tests on NVIDIA with the candidate's kernels.
set -u
R=$OUT/r; mkdir -p $R
. .gpu/nvidia-opencl-env.sh > $R/clinfo.txt 2>&1
t0=$SECONDS
log() { echo "[$((SECONDS - t0)) s] $*" | tee -a $R/steps.txt; }
{ date -u; nvidia-smi; git log -1 --format=%H; git status --short; } > $R/device.txt 2>&1
export CMAKE_PREFIX_PATH=$PWD/.gpu/hwy/usr LD_LIBRARY_PATH=$PWD/.gpu/hwy/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
log build
{ cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build -j16 --target test_opencl opencl_attention_bench; } > $R/build.txt 2>&1 || { log "build failed"; tail -30 $R/build.txt; }
export KVARN_CL_PLATFORM=NVIDIA KVARN_CL_CACHE=0
bench() {  # NAME KERNEL_DIR(or empty) FILTER
  env ${2:+KVARN_CL_KERNEL_DIR=$PWD/$2} timeout 150 build/benchmarks/opencl_attention_bench --benchmark_filter="$3" \
    --benchmark_out=$R/$1.json --benchmark_out_format=json > $R/$1.txt 2>&1
  log "$1 rc $?"
}
F='BM_Fused/Llama3_8B/ctx(4096|32768|131072)/batch(1|2|4)/'
log bench
for i in 1 2; do
  bench head$i "" "$F"; bench v4_$i .gpu/kv4 "$F"; bench old$i .gpu/kold "$F"
done
tar -czf $OUT/r0.tgz -C $OUT r
S='BM_SlotSplits/'
bench splits_head "" "$S"; bench splits_norot .gpu/kv5 "$S"; bench splits_nomerge .gpu/kv6 "$S"
tar -czf $OUT/r0.tgz -C $OUT r
log tests
KVARN_CL_KERNEL_DIR=$PWD/.gpu/kv4 timeout 200 build/test/test_opencl --gtest_filter='OpenCL/FusedAttend.*:OpenCLAttendPolicy.*:OpenCLDenormalDecode.*:LocalMemoryPlan.*' > $R/test_opencl_v4.txt 2>&1
log "tests rc $?"
grep -E "^\[  FAILED|PASSED|tests ran" $R/test_opencl_v4.txt | head
tar -czf $OUT/r.tgz -C $OUT r && rm -rf $R $OUT/r0.tgz
