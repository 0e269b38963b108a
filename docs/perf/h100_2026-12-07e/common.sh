# What both calls' scripts (run.sh, run3.sh) start with, sourced from the repository root on the
# GPU host: results under $OUT/r, a timed step log, the device and commit, the Release build of
# test_opencl and opencl_attention_bench (Highway from .gpu/hwy), NVIDIA's platform, and
#   bench NAME KERNEL_DIR FILTER   one benchmark run with the kernels of KERNEL_DIR (empty: the
#                                  tree's), cut off after BENCH_TIMEOUT seconds (default 150).
# (Moved here from the two scripts after the calls ran; the commands are the ones they ran.)
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
  env ${2:+KVARN_CL_KERNEL_DIR=$PWD/$2} timeout "${BENCH_TIMEOUT:-150}" build/benchmarks/opencl_attention_bench --benchmark_filter="$3" \
    --benchmark_out=$R/$1.json --benchmark_out_format=json > $R/$1.txt 2>&1
  log "$1 rc $?"
}
