#!/usr/bin/env bash
# Every kernel the library ships, run under Oclgrind (Debian's `oclgrind`, an OpenCL device
# simulator) with --data-races --check-api: out-of-bounds and unaligned accesses, data races in
# local and global memory, barrier divergence and OpenCL API misuse (issue 17).
#
#   .ci/oclgrind.sh [BUILD_DIR]    (default build/; needs BUILD_DIR/test/test_opencl, test_cache)
#
# Fails when a test fails or when Oclgrind reports anything at all: its messages go to a log per
# run (--log), which must stay empty; the logs are in BUILD_DIR/oclgrind/. --max-errors is raised
# from Oclgrind's 1000 so that a flood of one report cannot hide the rest (the forced in-kernel
# merge alone once gave over 38,000).
#
# Oclgrind interprets every work-item (minutes for what PoCL runs in seconds), so it runs the
# opencl suite's agreement tests on a representative subset, whose shapes between them reach the
# kernels' branches; the full grid runs natively on PoCL and on Intel's runtime. Every kernel:
#   - kvarn_quantize, kvarn_dequantize_{rotated,original}, kvarn_rotate_{f16,f32}: the codec sweep
#     (CodecKernels) at every geometry but two: its 301-tile batch (k4v2_g128 D 128) and k4v4_g128
#     D 128, whose quantize runs here through the attention cases (FusedAttend gqa4*, k4v4) and
#     whose 4-bit decode through k4v4_g64; so D 64/128/256, G 64 and 128, 2- and 4-bit codes;
#   - kvarn_attend_records (tile slots) and kvarn_attend_records_short, with kvarn_attend_merge:
#     FusedAttend on every preset and head_dim, sink below a tile, tails within and across a tile,
#     1 to 4 forced splits and the automatic choice, GQA 4 and 8 and MHA, f16 output, several
#     sequences of mixed lengths in one launch, each with the merge launch and the one-split
#     store; left out: gqa8 and batch10_mixed (the same branches at a larger size), gqa2 and
#     gqa3_odd_ratio (the same code at 2 and 3 query heads per group), gqa4_nosplit (its sink
#     below a tile and single split are in gqa4_mixed_auto): 35-45 s each under Oclgrind;
#   - kvarn_attend_fp16 (+ merge): every Fp16Attend case (rotated queries, splits, D 64 and 256);
#   - kvarn_attend_records_mma and kvarn_mma_probe with the emulated primitives (the inline-PTX
#     build runs on NVIDIA only): FusedAttend k4v4_g64_d64 and the probe test;
#   - kvarn_attend_records with -DAT_DENORM=1 (the denormal_decode variant), kvarn_denormal_probe
#     and kvarn_denormal_rate: FusedAttend k4v4 and k2v2 and the variant's policy and rate tests;
#   - kvarn_copy_rows, kvarn_check_rows: OpenCLCopyRows, Robustness; plus the error paths
#     (Errors, OpenCLAttend, CallerContext: caller-owned context and buffers);
#   - kvarn_append_rows_f32 (the decode step's append; _f16 is the same body with an fp16 load):
#     DecodeStep.DeviceFailureIsReportedAtFinishAndRolledBack of the cache suite (steps of host
#     rows, a tile completed by a step, a non-finite row caught on the device, steps after the
#     rollback). Not DecodeStep.OrdersWithTheCallersQueueThroughEvents: under Oclgrind 21.10 it
#     never got past its user-event gate (the process spun at 100 % CPU for minutes).
# Two lanes of Oclgrind processes run side by side (one simulator thread each, 2 cores): the
# portable kernels' cases without the emulated matrix-unit kernel (KVARN_CL_TEST_ALL_EMULATED=0)
# followed by the denormal_decode variant's; and the codec sweep with the one emulated case, then
# the 16 KiB profile's plans (below), then the decode-step case (measured on the 2-core dev VM:
# portable 248 s + denormal 81 s, emulated 167 s + lm16 115 s + step 40 s).
#
# Oclgrind's --uninitialized plugin is not used: with Debian's Oclgrind 21.10 (LLVM 14) it stops
# at the first `freeze` instruction ("Unsupported instruction: freeze").
set -euo pipefail
build=${1:-build}
for t in test_opencl test_cache; do
  [ -x "$build/test/$t" ] || { echo "oclgrind.sh: $build/test/$t not built" >&2; exit 2; }
done
out=$build/oclgrind
rm -rf "$out"
mkdir -p "$out"

portable='OpenCL/FusedAttend.*/gqa4_split3_tail_across'
portable+=':OpenCL/FusedAttend.*/gqa4_mixed_auto:OpenCL/FusedAttend.*/mha_f16'
portable+=':OpenCL/FusedAttend.*/k4v4:OpenCL/FusedAttend.*/k4v2_g64:OpenCL/FusedAttend.*/k2v2'
portable+=':OpenCL/FusedAttend.*/d64_gqa8:OpenCL/FusedAttend.*/d256_gqa4:OpenCL/Fp16Attend.*'
portable+=':OpenCLCopyRows.*:Robustness.*:Errors.*:OpenCLAttend.*:CallerContext.*'
# The tile-slot kernel's other accumulator build (FusedAttend: mostly the local-memory one, which
# the short splits of these cases do not take by themselves) on the cases whose geometry changes
# its local accumulators: V items of 8 channels with splits (gqa4_split3_tail_across), of 4
# (d64_gqa8), slots of 32 items (d256_gqa4), two K channel groups (k2v2); with denormal_decode,
# k2v2. The other cases run it in the PoCL and Intel suites.
other_accumulators=gqa4_split3_tail_across,d64_gqa8,d256_gqa4,k2v2
emulated='OpenCL/FusedAttend.*/k4v4_g64_d64:OpenCLNvidiaMmaSync.ProbeVerdicts:Geometries/CodecKernels.*'
emulated+='-Geometries/CodecKernels.*/k4v2_g128_d128_t301:Geometries/CodecKernels.*/k4v4_g128_d128_t7'
step='DecodeStep.DeviceFailureIsReportedAtFinishAndRolledBack'
# The plans of the 16 KiB profile (.ci/device_limits_16k.sh runs them natively): the two-pass
# quantize (Q_XP 2) at D 256, attention.cl in groups of 32 with its channel-group partials (k2v2),
# the short kernel's 64-item plan with a 4 KiB buffer (D 256, 4 heads per group) and its 8 KiB
# 128-item plan (D 64), the fp16 program's 64-item plan.
lm16='Geometries/CodecKernels.*/*_d256_*:OpenCL/FusedAttend.*/d256_gqa4:OpenCL/FusedAttend.*/k2v2'
lm16+=':OpenCL/FusedAttend.*/d64_gqa8:OpenCL/Fp16Attend.*/gqa8_d256'
# The denormal_decode variant of attention.cl (AT_DENORM), asked for with
# KVARN_CL_DENORMAL_DECODE=1 (every other run turns it off: Oclgrind reports a GPU with fp32
# denormals, so the policy would otherwise choose it and time its rate check under simulation):
# 4-bit K and V codes with the shifted word (k4v4) and 2-bit K codes, 16 per word (k2v2), and
# the capability probe and the rate check's kernel.
denormal='OpenCL/FusedAttend.*/k4v4:OpenCL/FusedAttend.*/k2v2:OpenCLDenormalDecode.Chosen*'
denormal+=':OpenCLDenormalDecode.RateCheck*'

# The simulated device is also the smallest device profile the library supports (Apple M-series,
# Mali, Adreno): --max-wgsize 256 makes Oclgrind report and enforce work-groups of at most 256
# items, its local memory is 32 KiB (enforced too), it has no fp16 and no subgroups, and
# KVARN_CL_DEVICE_LIMITS takes fp64 away as well; the runtime plans every program for that
# (docs/PORTABILITY.md). It reports itself as a GPU, so the programs are the unrolled GPU builds.
# KVARN_CL_CACHE=0: each process compiles its programs under Oclgrind (the binary cache would
# otherwise be on for this platform and write to $HOME). KVARN_CL_TEST_IN_KERNEL_MERGE=0: the
# forced in-kernel merge of the split kernels is left out: it hands partials between work-groups
# with a fence and an atomic ticket, more ordering than OpenCL 1.2 promises across work-groups, and
# Oclgrind reports the loads as races; the library never chooses it (attention_program.hpp).
run() {
  local name=$1 test_bin=$build/test/$2 filter=$3 started=$SECONDS
  shift 3
  env KVARN_CL_CACHE=0 KVARN_CL_TEST_IN_KERNEL_MERGE=0 KVARN_CL_DENORMAL_DECODE=0 \
    KVARN_CL_DEVICE_LIMITS=work_group=256,local_mem=32K,fp16=0,subgroups=0,fp64=0 \
    "$@" oclgrind --data-races --check-api --num-threads 1 --max-wgsize 256 --max-errors 1000000 \
    --log "$out/$name.log" "$test_bin" --gtest_filter="$filter" > "$out/$name.out" 2>&1
  echo $? > "$out/$name.rc"
  echo "oclgrind $name: exit $(cat "$out/$name.rc"), $((SECONDS - started)) s"
}
set +e
{ run portable test_opencl "$portable" KVARN_CL_TEST_ALL_EMULATED=0 \
    KVARN_CL_TEST_OTHER_ACCUMULATORS="$other_accumulators"
  run denormal test_opencl "$denormal" KVARN_CL_TEST_ALL_EMULATED=0 KVARN_CL_DENORMAL_DECODE=1 \
    KVARN_CL_TEST_OTHER_ACCUMULATORS=k2v2; } &
{ run emulated test_opencl "$emulated"
  run lm16 test_opencl "$lm16" KVARN_CL_TEST_ALL_EMULATED=0 \
    KVARN_CL_DEVICE_LIMITS=work_group=256,local_mem=16K,fp16=0,subgroups=0,fp64=0
  run step test_cache "$step"; } &
wait
set -e

fail=0
for name in portable step denormal emulated lm16; do
  tail -n 3 "$out/$name.out"
  if [ "$(cat "$out/$name.rc")" != 0 ]; then
    echo "oclgrind $name: the tests failed under Oclgrind:" >&2
    grep -E '^\[  FAILED  \]|Failure' "$out/$name.out" >&2 || tail -n 40 "$out/$name.out" >&2
    fail=1
  fi
  if [ -s "$out/$name.log" ]; then
    echo "oclgrind $name: Oclgrind reported errors ($out/$name.log):" >&2
    head -n 60 "$out/$name.log" >&2
    fail=1
  fi
done
exit $fail
