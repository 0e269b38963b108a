// The host's fp32 multiply-add rate, measured in the benchmark process itself with the same SIMD
// dispatch as the library (Google Highway), so CPU benchmarks can report their arithmetic as a
// fraction of what this machine's cores do.
#pragma once

namespace kvarn_cl::bench {

// fp32 FLOP/s (2 per multiply-add per lane) of `threads` threads running independent FMA chains,
// best of 3 (measured once per process and thread count).
double fma_rate(unsigned threads);

}  // namespace kvarn_cl::bench
