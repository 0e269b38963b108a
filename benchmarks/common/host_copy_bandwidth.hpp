// The host's copy bandwidth, measured in the benchmark process itself, so CPU benchmarks can report
// their rates as a fraction of what this machine's memory moves.
#pragma once

namespace kvarn_cl::bench {

// Read + write bytes per second of a 256 MiB memcpy, best of 5 (measured once per process).
double host_copy_bandwidth();

}  // namespace kvarn_cl::bench
