#!/usr/bin/env bash
# The script of each call here (tenth session), with its candidate's name and kernel folder:
#   call 1: bash run.sh new .gpu/knew    call 2: bash run.sh v2 .gpu/kv2    call 3: bash run.sh v3 .gpu/kv3
# (run from the repository root on the GPU host, .gpu carried: README.md says how each folder was
# made). Builds once, runs the attention benchmark six times alternating this tree's kernels
# (head), the candidate and b6eabce's kernels (.gpu/kold), then FusedAttend and the policy tests on
# NVIDIA with the candidate's kernels.
set -u
name=${1:?usage: run.sh NAME KERNEL_DIR}
dir=$PWD/${2:?usage: run.sh NAME KERNEL_DIR}
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
  for v in head "$name" old; do
    case $v in head) d=;; old) d=$PWD/.gpu/kold;; *) d=$dir;; esac
    env ${d:+KVARN_CL_KERNEL_DIR=$d} timeout 120 build/benchmarks/opencl_attention_bench --benchmark_filter="$F" \
      --benchmark_out=$R/${v}$i.json --benchmark_out_format=json > $R/${v}$i.txt 2>&1
    log "$v$i rc $?"
  done
done
tar -czf $OUT/r0.tgz -C $OUT r
log tests
KVARN_CL_KERNEL_DIR=$dir timeout 240 build/test/test_opencl --gtest_filter='OpenCL/FusedAttend.*:OpenCLAttendPolicy.*:OpenCLDenormalDecode.*:LocalMemoryPlan.*' > $R/test_opencl_$name.txt 2>&1
log "tests rc $?"
grep -E "^\[  FAILED|PASSED|tests ran" $R/test_opencl_$name.txt | head
tar -czf $OUT/r.tgz -C $OUT r && rm -rf $R $OUT/r0.tgz
