// The fp32 scale of the rotation (SPEC §2.2): the value the CPU codec multiplies by and the
// kernels receive as KV_ROT_SCALE, so that both produce the same bits. One floor below both.
#pragma once

namespace kvarn_cl::detail {

// 1/sqrt(n), correctly rounded from double (exact for n = 64 and 256).
float rotation_scale(int n) noexcept;

}  // namespace kvarn_cl::detail
