#!/usr/bin/env bash
# The decode-step run of docs/PERFORMANCE.md ("The engine's decode step"), on a GPU host, from the
# repository root, with everything its tables need in one call: the step and attention tests
# against the GPU's OpenCL, PyTorch's 32-layer step (same call, same card), our 32-layer step, the
# small-work attention A/B, PyTorch's single-layer SDPA. Writes at most 8 files to OUT.
#
#   . .gpu/nvidia-opencl-env.sh; bash benchmarks/run_step_device.sh "$OUT"
#
# B (default .gpu/bin) holds test_opencl, test_cache, test_capi, opencl_model_step_bench,
# opencl_attention_bench and kvarn-cl: either a build made on the host (B=build-device/...) or the
# Release binaries of a Debian 12 build carried there with libbenchmark.so.1debian and Highway
# (they link kvarn_cl statically and embed the kernels; set LD_LIBRARY_PATH to their folders).
# Each phase has the time limit of run 2 (one 10-minute device call): the model-step benchmark is cut
# by its 200 s there (the complete rows are kept, step_report.py reads them); raise it for a full run.
set -u
OUT=${1:-device-results}
B=${B:-.gpu/bin}
mkdir -p "$OUT"
export KVARN_CL_PLATFORM=${KVARN_CL_PLATFORM:-NVIDIA} PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; echo "commit: ${KVARN_COMMIT:-unknown}";
  clinfo 2>/dev/null | grep -i -E "command_buffer|Extensions" | head -4; } > $OUT/device.txt
cat $OUT/device.txt | head -4
$B/kvarn-cl info 2>&1 | grep -i -E "matrix|variant|probe" | head -3
t0=$SECONDS
( timeout 60 $B/test_opencl --gtest_filter='OpenCL/FusedAttend.*' 2>&1 | tail -4
  timeout 60 $B/test_cache --gtest_filter='DecodeStep*:DeviceInput*' 2>&1 | tail -3
  timeout 30 $B/test_capi --gtest_filter='CApiStep*' 2>&1 | tail -3 ) > $OUT/tests.txt 2>&1
echo "tests $((SECONDS-t0)) s"; grep -E "PASSED|FAILED" $OUT/tests.txt
timeout 40 python3 benchmarks/torch_model_step_bench.py $OUT/torch_model_step.json >> $OUT/log.txt 2>&1; echo "torch step $? $((SECONDS-t0)) s"
timeout 200 $B/opencl_model_step_bench --benchmark_counters_tabular=true --benchmark_out=$OUT/model_step.json --benchmark_out_format=json >> $OUT/log.txt 2>&1; echo "ours step $? $((SECONDS-t0)) s"
python3 benchmarks/step_report.py $OUT/model_step.json $OUT/torch_model_step.json > $OUT/step_tables.md 2>&1; cat $OUT/step_tables.md | cut -c1-250
timeout 35 $B/opencl_attention_bench --benchmark_filter='BM_FusedAB|BM_Fused/Llama3_8B/ctx(1024|4096)/batch(1|8)/' --benchmark_counters_tabular=true --benchmark_out=$OUT/attn_ab.json --benchmark_out_format=json >> $OUT/log.txt 2>&1; echo "attn $? $((SECONDS-t0)) s"
timeout 25 python3 benchmarks/torch_sdpa_bench.py $OUT/torch_sdpa.json >> $OUT/log.txt 2>&1; echo "sdpa $? $((SECONDS-t0)) s"
