#!/usr/bin/env python3
"""What users would pick instead of libkvarn_cl: PyTorch's fp16 scaled_dot_product_attention for
one decode step of one layer (one query token per sequence), on the shapes of opencl_attention_bench,
measured in the same run by benchmarks/run_device.sh where python3 has torch with CUDA.

    python3 benchmarks/torch_sdpa_bench.py [OUT.json]

Every shape is timed three ways (benchmarks/torch_timing.py says exactly how):

  kernel_only_us  GPU time per call: 10-100 calls queued behind a GPU-side sleep (torch.cuda._sleep),
                  CUDA events around the batch, time / calls, median of 5 batches. The host's launch
                  cost is NOT in it: this is the figure to set beside our OpenCL event times.
  graph_us        per call, from a CUDA graph of up to 20 calls (graph_calls) replayed behind a
                  GPU-side sleep (how engines run a decode step).
  per_call_us     CUDA events around ONE call on an idle GPU, median of 50: the launch cost IS in it
                  (at batch 1 x 1K it is mostly launch cost). Not comparable with kernel event times.

Writes a JSON object (device, driver, torch, cuda, date, "timing": what each field means, "rows":
one object per shape) to OUT.json and a table to stdout. Skips itself (exit 0) without torch or CUDA.
"""
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_timing import CudaTimer, driver_version, now_utc  # noqa: E402

TIMING = {
    "kernel_only_us": "GPU time per call: calls queued behind torch.cuda._sleep, CUDA events around the "
                      "batch, time / calls, median of 5 batches; launch cost excluded (like OpenCL event times)",
    "graph_us": "per call, CUDA graph of graph_calls calls replayed behind a GPU-side sleep, median of 5",
    "per_call_us": "CUDA events around one call on an idle GPU, median of 50 (20 above 4 GB of K+V); "
                   "includes the launch cost",
    "TBps_kernel_only": "K+V bytes / kernel_only_us",
}


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "torch_sdpa_bench.json"
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_sdpa_bench: no torch ({e}); skipped")
        return 0
    if not torch.cuda.is_available():
        print("torch_sdpa_bench: torch has no CUDA device; skipped")
        return 0
    dev = torch.device("cuda")
    timer = CudaTimer(torch)
    info = {"device": torch.cuda.get_device_name(0), "driver": driver_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": now_utc(), "timing": TIMING,
            "sleep_cycles_per_us": timer.cycles_per_us, "rows": [], "skipped": []}
    print(f"torch_sdpa_bench: {info['device']}, driver {info['driver']}, torch {info['torch']} "
          f"(CUDA {info['cuda']}), {info['date']}")
    print("fp16 scaled_dot_product_attention, one query token per sequence, D 128; µs per call.")
    print("kernel-only = GPU time (calls queued behind a GPU-side sleep; comparable with OpenCL event "
          "times); graph = CUDA graph replay; per-call = events around one call on an idle GPU "
          "(launch cost included)")
    print(f"{'Hq/Hk':>6} {'batch':>5} {'context':>7} {'kernel-only':>11} {'graph':>9} {'per-call':>9} "
          f"{'TB/s (k-o)':>10}", flush=True)
    D = 128
    GRAPH_CALLS = 20
    for hq, hk in ((32, 8), (32, 32)):
        for ctx in (1024, 4096, 32768, 131072):
            for batch in (1, 8, 32, 64):
                kv_bytes = 2 * batch * hk * ctx * D * 2
                gc.collect()
                torch.cuda.empty_cache()
                free = torch.cuda.mem_get_info()[0]
                if kv_bytes > 0.6 * free:
                    info["skipped"].append({"hq": hq, "hk": hk, "context": ctx, "batch": batch,
                                            "reason": f"K+V {kv_bytes / 1e9:.1f} GB > 0.6 of free {free / 1e9:.1f} GB"})
                    print(f"{hq}/{hk:<3} {batch:>5} {ctx:>7}  skipped: K+V {kv_bytes / 1e9:.1f} GB does not fit "
                          f"0.6 of the {free / 1e9:.1f} GB free", flush=True)
                    continue
                q = k = v = None
                try:
                    q = torch.randn(batch, hq, 1, D, device=dev, dtype=torch.float16)
                    k = torch.randn(batch, hk, ctx, D, device=dev, dtype=torch.float16)
                    v = torch.randn(batch, hk, ctx, D, device=dev, dtype=torch.float16)

                    def call():
                        return F.scaled_dot_product_attention(q, k, v, enable_gqa=hq != hk)

                    for _ in range(10):
                        call()
                    per_call = timer.per_call(call, n=50 if kv_bytes < 4e9 else 20)
                    # About 50 ms of GPU work per timed batch: 5 to 100 calls.
                    n = max(5, min(100, int(50_000 / max(per_call, 1.0))))
                    kernel_only, kinfo = timer.queued(call, n=n, reps=5, host_us_per_call=per_call)
                    calls_in_graph = max(1, min(GRAPH_CALLS, int(4_000 / max(per_call, 1.0))))
                    graph_us, graph_wall, ginfo = timer.graph(call, calls_in_graph=calls_in_graph,
                                                              replays=5, reps=5)
                except Exception as e:  # noqa: BLE001 - out of memory or a failing call: say so, go on
                    reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
                    info["skipped"].append({"hq": hq, "hk": hk, "context": ctx, "batch": batch, "reason": reason})
                    print(f"{hq}/{hk:<3} {batch:>5} {ctx:>7}  skipped: {reason}", flush=True)
                    q = k = v = None
                    continue
                row = {"hq": hq, "hk": hk, "D": D, "context": ctx, "batch": batch, "kv_bytes": kv_bytes,
                       "kernel_only_us": kernel_only, "graph_us": graph_us, "per_call_us": per_call,
                       "graph_calls": calls_in_graph, "graph_replay_wall_us": graph_wall,
                       "kernel_only_info": kinfo, "graph_info": ginfo,
                       "TBps_kernel_only": kv_bytes / (kernel_only * 1e-6) / 1e12 if kernel_only else None,
                       "TBps_per_call": kv_bytes / (per_call * 1e-6) / 1e12}
                info["rows"].append(row)
                f = lambda x: f"{x:9.1f}" if x is not None else "        —"
                tb = f"{row['TBps_kernel_only']:10.2f}" if kernel_only else "         —"
                print(f"{hq}/{hk:<3} {batch:>5} {ctx:>7}   {f(kernel_only)} {f(graph_us)} {f(per_call)} {tb}",
                      flush=True)
                del q, k, v, call
    with open(out, "w") as fh:
        json.dump(info, fh, indent=1)
    print(f"torch_sdpa_bench: {len(info['rows'])} shapes, {len(info['skipped'])} skipped; JSON in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
