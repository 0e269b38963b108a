#!/usr/bin/env python3
"""What users would pick instead of libkvarn_cl: PyTorch's fp16 scaled_dot_product_attention for
one decode step (one query token per sequence), on the same shapes as opencl_attention_bench,
measured in the same run by benchmarks/run_device.sh where python3 has torch with CUDA.

Timing: CUDA events around each call after 10 warm-up calls, the median of 50 calls.
Writes one JSON object per shape (a list) to the file given as the first argument.
"""
import json
import statistics
import sys


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
    free = torch.cuda.mem_get_info()[0]
    rows = []
    D = 128
    for hq, hk in ((32, 8), (32, 32)):
        for ctx in (1024, 4096, 32768, 131072):
            for batch in (1, 8, 32, 64):
                kv_bytes = 2 * batch * hk * ctx * D * 2
                if kv_bytes > 0.6 * free:
                    continue
                q = torch.randn(batch, hq, 1, D, device=dev, dtype=torch.float16)
                k = torch.randn(batch, hk, ctx, D, device=dev, dtype=torch.float16)
                v = torch.randn(batch, hk, ctx, D, device=dev, dtype=torch.float16)

                def call():
                    return F.scaled_dot_product_attention(q, k, v, enable_gqa=hq != hk)

                for _ in range(10):
                    call()
                torch.cuda.synchronize()
                times = []
                for _ in range(50):
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    call()
                    b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b) * 1e3)  # us
                us = statistics.median(times)
                rows.append({"hq": hq, "hk": hk, "D": D, "context": ctx, "batch": batch,
                             "us_per_step": us, "kv_bytes": kv_bytes,
                             "TBps": kv_bytes / (us * 1e-6) / 1e12})
                print(f"torch sdpa Hq{hq} Hk{hk} ctx{ctx} batch{batch}: {us:9.1f} us  "
                      f"{rows[-1]['TBps']:.2f} TB/s", flush=True)
                del q, k, v
                torch.cuda.empty_cache()
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "cuda": torch.version.cuda, "rows": rows}
    with open(out, "w") as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
