#!/usr/bin/env bash
# The eleventh session's second call (repository root on the GPU host, .gpu carried; README.md
# says what each kernel set was): the tree's kernels (cand) against .gpu/kbase, twice,
# alternating, with .gpu/kv7 in the second pass; the split sweep at 32K with all three; the tests
# on NVIDIA with the tree's kernels.
BENCH_TIMEOUT=120
. docs/perf/h100_2026-12-07e/common.sh
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
