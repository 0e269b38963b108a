#!/usr/bin/env bash
# The 128-work-item device-limit profile on PoCL (issue 17 item 3; docs/PORTABILITY.md):
# KVARN_CL_DEVICE_LIMITS lowers what the device reports to work-groups of 128 items and 32 KiB of
# local memory, POCL_MAX_WORK_GROUP_SIZE makes PoCL enforce the 128, and every kernel is checked
# against the profile when it is created. Under it the launch descriptors plan differently
# (program_table.hpp): the quantize kernel takes 16 tokens per work-item at G 128 · D 128 and 32
# at D 256 (groups of 128), the rotation, the row copies and the attention merge narrow to 128
# items. So this runs the codec cases of every geometry, a fused case at D 256 and one fused and
# one fp16 case with splits (the merge launch), and the row copies. (DeviceLimits.* checks the
# plan itself in the main suite; under POCL_MAX_WORK_GROUP_SIZE=128 its 256 child cannot run.)
# The tile-slot kernel's other accumulator build is left out (KVARN_CL_TEST_OTHER_ACCUMULATORS=0):
# its group is 64 items under either limit, and the 256-item profile's step runs it at D 256.
# Usage: bash .ci/device_limits_128.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: device_limits_128.sh BUILD_DIR}
cases='Geometries/CodecKernels.*'
cases+=':OpenCL/FusedAttend.*/d256_gqa4:OpenCL/FusedAttend.*/gqa4_split3_tail_across'
cases+=':OpenCL/Fp16Attend.*/gqa4_rotated_split4:OpenCLCopyRows.*'
KVARN_CL_DEVICE_LIMITS=work_group=128,local_mem=32K,fp16=0,subgroups=0,fp64=0 \
  KVARN_CL_TEST_OTHER_ACCUMULATORS=0 POCL_MAX_WORK_GROUP_SIZE=128 \
  "$build/test/test_opencl" --gtest_filter="$cases"
