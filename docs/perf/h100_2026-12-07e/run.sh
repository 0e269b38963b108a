#!/usr/bin/env bash
# The eleventh session's call (run from the repository root on the GPU host, .gpu carried; README.md
# says how each kernel folder was made). Builds once, then
#   1. the attention benchmark at batch 1-4, alternating this tree's kernels (head), the candidate
#      .gpu/kv4 and b6eabce's kernels (.gpu/kold), twice;
#   2. the tile-slot split sweep (BM_SlotSplits) with this tree's kernels and two probes that give
#      wrong results on purpose, to time a part by leaving it out: .gpu/kv5 (no query rotation)
#      and .gpu/kv6 (no in-kernel merge of the splits);
#   3. FusedAttend and the policy tests on NVIDIA with the candidate's kernels.
. docs/perf/h100_2026-12-07e/common.sh
F='BM_Fused/Llama3_8B/ctx(4096|32768|131072)/batch(1|2|4)/'
log bench
for i in 1 2; do
  bench head$i "" "$F"; bench v4_$i .gpu/kv4 "$F"; bench old$i .gpu/kold "$F"
done
pack
S='BM_SlotSplits/'
bench splits_head "" "$S"; bench splits_norot .gpu/kv5 "$S"; bench splits_nomerge .gpu/kv6 "$S"
pack
log tests
KVARN_CL_KERNEL_DIR=$PWD/.gpu/kv4 timeout 200 build/test/test_opencl --gtest_filter='OpenCL/FusedAttend.*:OpenCLAttendPolicy.*:OpenCLDenormalDecode.*:LocalMemoryPlan.*' > $R/test_opencl_v4.txt 2>&1
log "tests rc $?"
grep -E "^\[  FAILED|PASSED|tests ran" $R/test_opencl_v4.txt | head
tar -czf $OUT/r.tgz -C $OUT r && rm -rf $R $OUT/r0.tgz
