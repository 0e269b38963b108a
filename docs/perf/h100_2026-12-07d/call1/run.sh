#!/usr/bin/env bash
# Session 10, call 1: the registers build with alpha applied before the V loops (f2ae1aa's
# attention.cl, .gpu/knew) against HEAD's kernels and b6eabce's (.gpu/kold), same host, alternating;
# FusedAttend and the policy tests on NVIDIA with f2ae1aa's kernel.
set -u
R=$OUT/r; mkdir -p $R
. .gpu/nvidia-opencl-env.sh > $R/clinfo.txt 2>&1
t0=$SECONDS
log() { echo "[$((SECONDS - t0)) s] $*" | tee -a $R/steps.txt; }
{ date -u; nvidia-smi; git log -1 --format=%H; } > $R/device.txt 2>&1
export CMAKE_PREFIX_PATH=$PWD/.gpu/hwy/usr LD_LIBRARY_PATH=$PWD/.gpu/hwy/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
log build
{ cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build -j16 --target test_opencl opencl_attention_bench; } > $R/build.txt 2>&1 || { log "build failed"; tail -30 $R/build.txt; }
export KVARN_CL_PLATFORM=NVIDIA KVARN_CL_CACHE=0
F='BM_Fused/Llama3_8B/ctx(4096|32768|131072)/batch(1|2|4)/'
log bench
for i in 1 2; do
  for v in head new old; do
    case $v in head) d=;; new) d=$PWD/.gpu/knew;; old) d=$PWD/.gpu/kold;; esac
    env ${d:+KVARN_CL_KERNEL_DIR=$d} timeout 120 build/benchmarks/opencl_attention_bench --benchmark_filter="$F" \
      --benchmark_out=$R/${v}$i.json --benchmark_out_format=json > $R/${v}$i.txt 2>&1
    log "$v$i rc $?"
  done
done
tar -czf $OUT/r0.tgz -C $OUT r
log tests
KVARN_CL_KERNEL_DIR=$PWD/.gpu/knew timeout 240 build/test/test_opencl --gtest_filter='OpenCL/FusedAttend.*:OpenCLAttendPolicy.*:OpenCLDenormalDecode.*:LocalMemoryPlan.*' > $R/test_opencl_new.txt 2>&1
log "tests rc $?"
grep -E "^\[  FAILED|PASSED|tests ran" $R/test_opencl_new.txt | head
tar -czf $OUT/r.tgz -C $OUT r && rm -rf $R $OUT/r0.tgz
