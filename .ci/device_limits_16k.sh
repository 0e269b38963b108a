#!/usr/bin/env bash
# The 16 KiB local-memory profiles on PoCL (issue 17 item 3; docs/PORTABILITY.md): work-groups of
# 256, then of 128, each with 16 KiB of local memory and no fp16, fp64 or subgroups.
# KVARN_CL_DEVICE_LIMITS lowers what the device reports, POCL_MAX_WORK_GROUP_SIZE makes PoCL
# enforce the work-group limit, and every kernel is checked against the profile's local memory
# when it is created (CL_KERNEL_LOCAL_MEM_SIZE), so a plan that does not fit fails here.
#
# Below 32 KiB the launch descriptors plan smaller shapes (attention_program.hpp,
# codec_program.hpp): attention.cl in groups of 32 (AT_NS halves) at every geometry;
# attention_short.cl and the fp16 program with an 8 KiB reduction buffer, and at D 256 with 4
# heads per group 64 items and 4 KiB; the quantize reduction one axis at a time from D 128, and
# at D 256 in two token passes with 16 tokens per item (32 under work-groups of 128); the
# dequantize group 32. The cases, and why they reach every changed plan:
#   Geometries/CodecKernels.*   every preset and head_dim (the codec plan changes at each);
#   FusedAttend d256_gqa4       D 256, 4 heads per group: the short kernel's 64-item plan, one
#                               tile slot per group, the two-pass quantize of the cache's tiles;
#   FusedAttend k2v2            two K channel groups per slot (attention.cl's sp partials);
#   FusedAttend gqa4_split3_tail_across, d64_mha_nosplit, d64_gqa8
#                               splits with the merge launch, one head per group with one split
#                               (the direct store), D 64 with f16 output (the short kernel's
#                               128-item plan with 8 KiB at 1 and 4 heads per group);
#   Fp16Attend gqa8_d256, gqa4_rotated_split4
#                               the fp16 program's 64-item plan (D 256) and 128-item plan with
#                               splits; every FusedAttend case runs every fused kernel (forced).
# Under work-groups of 128 the attention plans are the same (the short kernel is 128 wide); what
# changes besides is the quantize group (16 tokens per item at D 128 · G 128, 32 at D 256; D 64
# keeps 8) and the 128-item rotation, copies and merge, so that pass runs the codec cases but the
# quantize ones at D 64, the fused case at D 256 (the cache's quantize) and one fused and one
# fp16 case with splits (the 128-item merge), and the row copies.
# LocalMemoryPlan.* (main suite) checks the plans of every geometry and heads per group on the
# host, and the host's sizes against the kernels' own.
# Usage: bash .ci/device_limits_16k.sh BUILD_DIR [256|128]    (both work-group limits by default;
# .ci/run runs them in two lanes side by side)
set -euo pipefail
build=${1:?usage: device_limits_16k.sh BUILD_DIR [256|128]}
only=${2:-}
fused=':OpenCL/FusedAttend.*/d256_gqa4:OpenCL/FusedAttend.*/k2v2'
fused+=':OpenCL/FusedAttend.*/gqa4_split3_tail_across:OpenCL/FusedAttend.*/d64_mha_nosplit'
fused+=':OpenCL/FusedAttend.*/d64_gqa8'
fused+=':OpenCL/Fp16Attend.*/gqa8_d256:OpenCL/Fp16Attend.*/gqa4_rotated_split4'
[ "$only" = 128 ] || KVARN_CL_DEVICE_LIMITS=work_group=256,local_mem=16K,fp16=0,subgroups=0,fp64=0 \
  POCL_MAX_WORK_GROUP_SIZE=256 "$build/test/test_opencl" \
  --gtest_filter="Geometries/CodecKernels.*$fused:OpenCLCopyRows.*"
[ "$only" = 256 ] || KVARN_CL_DEVICE_LIMITS=work_group=128,local_mem=16K,fp16=0,subgroups=0,fp64=0 \
  POCL_MAX_WORK_GROUP_SIZE=128 "$build/test/test_opencl" \
  --gtest_filter='Geometries/CodecKernels.*:OpenCL/FusedAttend.*/d256_gqa4:OpenCL/FusedAttend.*/gqa4_split3_tail_across:OpenCL/Fp16Attend.*/gqa4_rotated_split4:OpenCLCopyRows.*-Geometries/CodecKernels.QuantizeMatchesTheReference/*_d64_*'
