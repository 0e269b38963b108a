#!/usr/bin/env python3
"""What an engine's decode step costs in PyTorch fp16: the attention part of one generated token of a
32-layer model with Llama-3-8B heads (Hq 32, Hk 8, D 128), the baseline of issue 21's model-step
benchmark.

Per step, for each of the 32 layers: write the new token's K and V of every sequence into a
preallocated fp16 cache at position `context` (index_copy_ along the token axis, the position in a
device tensor as engines keep it) and run scaled_dot_product_attention of one query token per sequence
over the context + 1 cached tokens (GQA through enable_gqa, or K/V expanded where torch lacks it).
Each layer has its own cache tensors [batch, Hk, context + 1, D].

    python3 benchmarks/torch_model_step_bench.py [OUT.json] [--batches 1,8,64]
        [--contexts 1024,4096,32768,131072] [--layers 32] [--budget-gb 60] [--capacity-context 32768]
        [--reserve-gb 2]

Each shape (batch x context) is timed three ways (benchmarks/torch_timing.py says exactly how):
  eager_wall_us   host wall clock of one eager step followed by torch.cuda.synchronize() (median):
                  what a caller that runs the layers eagerly and waits once per step sees.
  kernel_only_us  GPU time per step: whole steps queued behind a GPU-side sleep, events around them;
                  launch cost excluded.
  graph_us        per step, the whole 32-layer step captured once as a CUDA graph and replayed behind
                  a GPU-side sleep (how engines run decode); graph_replay_wall_us is the host wall
                  clock of one replay + synchronize.
Shapes whose cache does not fit the card's free memory (torch.cuda.mem_get_info, less a reserve) are
skipped and listed with the reason. Memory is freed between shapes.

Capacity view: at a KV memory budget (--budget-gb, default 60, GB = 1e9 bytes) the largest batch
whose fp16 cache (all layers, context + 1 tokens) fits at --capacity-context tokens, and the
attention tokens/s PyTorch reaches there (batch / step time): measured at that batch where it fits
the card, else measured at the largest batch that fits and scaled linearly in batch (said in the
JSON's "derived" field).

Writes JSON to OUT.json (default torch_model_step_bench.json) and a readable table to stdout. Exits
0 with a message where torch or CUDA is missing.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_timing import CudaTimer, driver_version, now_utc  # noqa: E402

HQ, HK, D = 32, 8, 128
GiB = 1024 ** 3

TIMING = {
    "eager_wall_us": "host wall clock of one eager 32-layer step + torch.cuda.synchronize(), median",
    "kernel_only_us": "GPU time per step: steps queued behind torch.cuda._sleep, CUDA events around them, "
                      "time / steps, median of 5 batches; launch cost excluded",
    "graph_us": "per step: the whole step captured as one CUDA graph, replays queued behind a GPU-side "
                "sleep, events around them, median of 5 batches",
    "graph_replay_wall_us": "host wall clock of one graph replay + torch.cuda.synchronize(), median",
    "per_layer_*": "the step figure / layers",
    "cache_TBps_kernel_only": "fp16 K+V bytes read per step (all layers, context + 1 tokens) / kernel_only_us",
    "tokens_per_s": "batch / step time (attention part of decode only)",
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="torch_model_step_bench.json")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--contexts", default="1024,4096,32768,131072")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--budget-gb", type=float, default=60.0, help="KV memory budget of the capacity view (1e9 B)")
    p.add_argument("--capacity-context", type=int, default=32768)
    p.add_argument("--no-capacity", action="store_true", help="skip the capacity view")
    p.add_argument("--reserve-gb", type=float, default=2.0,
                   help="GiB of the card's free memory never used (also at least 3 %% of the card)")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # 'cpu': logic smoke test only
    return p.parse_args(argv)


class Step:
    """One decode step of `layers` layers: KV write at position `context` + SDPA over context + 1 tokens."""

    def __init__(self, torch, F, dev, dtype, batch, context, layers, gqa):
        self.F, self.layers, self.gqa = F, layers, gqa
        cap = context + 1
        self.k, self.v, self.q, self.k_new, self.v_new = [], [], [], [], []
        for _ in range(layers):
            self.k.append(torch.empty(batch, HK, cap, D, device=dev, dtype=dtype).normal_())
            self.v.append(torch.empty(batch, HK, cap, D, device=dev, dtype=dtype).normal_())
            self.q.append(torch.randn(batch, HQ, 1, D, device=dev, dtype=dtype))
            self.k_new.append(torch.randn(batch, HK, 1, D, device=dev, dtype=dtype))
            self.v_new.append(torch.randn(batch, HK, 1, D, device=dev, dtype=dtype))
        self.pos = torch.tensor([context], device=dev, dtype=torch.long)
        self.out = None

    def attend(self, q, k, v):
        if self.gqa == "enable_gqa":
            return self.F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        b, hk, t, d = k.shape
        g = HQ // hk  # what engines did before enable_gqa: materialize the repeated heads
        k = k[:, :, None].expand(b, hk, g, t, d).reshape(b, hk * g, t, d)
        v = v[:, :, None].expand(b, hk, g, t, d).reshape(b, hk * g, t, d)
        return self.F.scaled_dot_product_attention(q, k, v)

    def __call__(self):
        out = None
        for layer in range(self.layers):
            self.k[layer].index_copy_(2, self.pos, self.k_new[layer])
            self.v[layer].index_copy_(2, self.pos, self.v_new[layer])
            out = self.attend(self.q[layer], self.k[layer], self.v[layer])
        self.out = out
        return out

    def free(self):
        self.k = self.v = self.q = self.k_new = self.v_new = None
        self.out = self.pos = None


def gqa_mode(torch, F, dev, dtype):
    q = torch.randn(1, HQ, 1, D, device=dev, dtype=dtype)
    k = torch.randn(1, HK, 4, D, device=dev, dtype=dtype)
    try:
        F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
        return "enable_gqa"
    except (TypeError, RuntimeError):
        return "expand"


def check_step(torch, F, step, batch, context):
    """The step must equal attention computed by hand over the written cache (last layer, float32)."""
    out = step()
    k, v, q = step.k[-1].float(), step.v[-1].float(), step.q[-1].float()
    assert torch.equal(step.k[-1][:, :, context], step.k_new[-1][:, :, 0]), "K write"
    assert torch.equal(step.v[-1][:, :, context], step.v_new[-1][:, :, 0]), "V write"
    g = HQ // HK
    k = k.repeat_interleave(g, dim=1)
    v = v.repeat_interleave(g, dim=1)
    ref = torch.softmax(q @ k.transpose(-1, -2) / D ** 0.5, dim=-1) @ v
    err = (out.float() - ref).abs().max().item()
    assert out.shape == (batch, HQ, 1, D), out.shape
    assert err < 2e-2, f"attention differs from the reference by {err}"
    return err


def measure(torch, F, dev, dtype, timer, batch, context, layers, gqa, check=False):
    """Times one shape; returns a row dict (without the status fields)."""
    step = Step(torch, F, dev, dtype, batch, context, layers, gqa)
    try:
        row = {}
        if check:
            row["max_abs_err_vs_reference"] = check_step(torch, F, step, batch, context)
        for _ in range(3):
            step()
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        est = (time.perf_counter() - t0) * 1e6
        n = max(5, min(30, int(500_000 / max(est, 1.0))))
        if timer is None:  # CPU smoke test: wall clock only
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                step()
                times.append((time.perf_counter() - t0) * 1e6)
            row.update(eager_wall_us=statistics.median(times), kernel_only_us=None, graph_us=None,
                       graph_replay_wall_us=None, kernel_only_info=None, graph_info=None)
        else:
            row["eager_wall_us"] = timer.wall(step, n=n)
            kernel_only, kinfo = timer.queued(step, n=4, reps=5, host_us_per_call=row["eager_wall_us"])
            replays = max(2, min(10, int(50_000 / max(row["eager_wall_us"], 1.0))))
            graph_us, graph_wall, ginfo = timer.graph(step, calls_in_graph=1, replays=replays, reps=5)
            row.update(kernel_only_us=kernel_only, graph_us=graph_us, graph_replay_wall_us=graph_wall,
                       kernel_only_info=kinfo, graph_info=ginfo)
        return row
    finally:
        step.free()
        del step
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()


def finish_row(row, batch, context, layers, cache_bytes):
    read_bytes = cache_bytes  # every layer reads its whole cache of context + 1 tokens
    for key in ("eager_wall_us", "kernel_only_us", "graph_us"):
        v = row.get(key)
        row["per_layer_" + key] = v / layers if v else None
    ko = row.get("kernel_only_us")
    row["cache_TBps_kernel_only"] = read_bytes / (ko * 1e-6) / 1e12 if ko else None
    row["tokens_per_s_graph"] = batch / (row["graph_us"] * 1e-6) if row.get("graph_us") else None
    row["tokens_per_s_eager"] = batch / (row["eager_wall_us"] * 1e-6) if row.get("eager_wall_us") else None
    return row


def is_oom(torch, e):
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()


def fmt(x, w=9, p=1):
    return f"{x:{w}.{p}f}" if x is not None else " " * (w - 1) + "—"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_model_step_bench: no torch ({e}); skipped")
        return 0
    cpu = args.device == "cpu"
    if not cpu and not torch.cuda.is_available():
        print("torch_model_step_bench: torch has no CUDA device; skipped")
        return 0
    dev = torch.device(args.device)
    dtype = torch.float16
    batches = [int(x) for x in args.batches.split(",") if x]
    contexts = [int(x) for x in args.contexts.split(",") if x]
    layers = args.layers
    bytes_per_token = layers * 2 * HK * D * 2  # fp16 K and V of one token of one sequence, all layers

    if cpu:
        timer, name, total = None, "CPU (logic smoke test: wall clock only, not a baseline)", 0
        driver = "-"
    else:
        timer = CudaTimer(torch)
        name, driver = torch.cuda.get_device_name(0), driver_version()
        total = torch.cuda.mem_get_info()[1]
    reserve = max(args.reserve_gb * GiB, 0.03 * total)

    def free_bytes():
        if cpu:
            return 8 * GiB
        gc.collect()
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info()[0]

    def overhead(batch):  # q, new K/V and outputs of every layer, SDPA workspace, graph pool: generous
        return 4 * layers * batch * HQ * D * 2 * 4 + 256 * 1024 ** 2

    gqa = gqa_mode(torch, F, dev, dtype)
    info = {"device": name, "driver": driver, "torch": torch.__version__,
            "cuda": None if cpu else torch.version.cuda, "date": now_utc(),
            "model": {"layers": layers, "hq": HQ, "hk": HK, "D": D, "dtype": "float16", "gqa": gqa,
                      "kv_write": "index_copy_ at position context (device index tensor)",
                      "cache_layout": "per layer [batch, Hk, context + 1, D]",
                      "fp16_bytes_per_token_per_sequence": bytes_per_token},
            "timing": TIMING, "card_bytes": total, "reserve_bytes": reserve,
            "sleep_cycles_per_us": None if cpu else timer.cycles_per_us, "rows": []}
    print(f"torch_model_step_bench: {name}, driver {driver}, torch {torch.__version__}"
          f"{'' if cpu else f' (CUDA {torch.version.cuda})'}, {info['date']}")
    print(f"fp16 decode step of {layers} layers, Hq {HQ} / Hk {HK} / D {D} (GQA via {gqa}): per layer a K and "
          f"V write at position context (index_copy_) + SDPA of 1 query token over context + 1 tokens.")
    print("eager wall = host clock of a step + synchronize; kernel-only = GPU time (steps queued behind a "
          "GPU-side sleep); graph = the whole step as one replayed CUDA graph (GPU time); µs per step")
    print(f"{'batch':>5} {'context':>7} {'eager wall':>10} {'kernel-only':>11} {'graph':>9} {'graph wall':>10} "
          f"{'graph/layer':>11} {'TB/s (k-o)':>10} {'tok/s (graph)':>13}", flush=True)

    first = True
    for context in contexts:
        for batch in batches:
            cache_bytes = bytes_per_token * batch * (context + 1)
            need = cache_bytes + overhead(batch)
            free = free_bytes()
            row = {"batch": batch, "context": context, "layers": layers, "cache_bytes": cache_bytes}
            if need > free - reserve:
                row.update(status="skipped", reason=f"fp16 cache {cache_bytes / 1e9:.1f} GB (+ overhead) does not "
                                                    f"fit {free / 1e9:.1f} GB free less the {reserve / 1e9:.1f} GB reserve")
                info["rows"].append(row)
                print(f"{batch:>5} {context:>7}  skipped: {row['reason']}", flush=True)
                continue
            try:
                # The reference check materializes the last layer in float32 four times over: small shapes only.
                check = first and batch * (context + 1) <= (1 << 17)
                row.update(measure(torch, F, dev, dtype, timer, batch, context, layers, gqa, check=check))
                row["status"] = "ok"
                first = first and not check
            except Exception as e:  # noqa: BLE001 - out of memory, a failed check: say so, go on
                traceback.print_exc()
                row.update(status="skipped" if is_oom(torch, e) else "error",
                           reason=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}")
                info["rows"].append(row)
                print(f"{batch:>5} {context:>7}  skipped: {row['reason']}", flush=True)
                free_bytes()
                continue
            finish_row(row, batch, context, layers, cache_bytes)
            info["rows"].append(row)
            print(f"{batch:>5} {context:>7} {fmt(row['eager_wall_us'], 10)} {fmt(row['kernel_only_us'], 11)} "
                  f"{fmt(row['graph_us'])} {fmt(row['graph_replay_wall_us'], 10)} "
                  f"{fmt(row['per_layer_graph_us'], 11)} {fmt(row['cache_TBps_kernel_only'], 10, 2)} "
                  f"{fmt(row['tokens_per_s_graph'], 13, 0)}", flush=True)
            if row.get("graph_info", {}) and row["graph_info"].get("error"):
                print(f"      graph capture failed: {row['graph_info']['error']}", flush=True)

    if not args.no_capacity:
        info["capacity"] = capacity(args, torch, F, dev, dtype, timer, layers, gqa, bytes_per_token,
                                    free_bytes, reserve, overhead, info["rows"], cpu)

    with open(args.out, "w") as fh:
        json.dump(info, fh, indent=1)
    count = lambda status: sum(r["status"] == status for r in info["rows"])
    print(f"torch_model_step_bench: {count('ok')} shapes measured, {count('skipped')} skipped, "
          f"{count('error')} failed; JSON in {args.out}")
    return 1 if count("error") else 0


def capacity(args, torch, F, dev, dtype, timer, layers, gqa, bytes_per_token, free_bytes, reserve, overhead,
             rows, cpu):
    ctx = args.capacity_context
    budget = args.budget_gb * 1e9
    per_seq = bytes_per_token * (ctx + 1)
    batch = int(budget // per_seq)
    cap = {"budget_bytes": budget, "context": ctx, "fp16_bytes_per_sequence": per_seq, "batch": batch}
    print(f"capacity view: a {args.budget_gb:g} GB KV budget holds {batch} sequences of {ctx} (+1) tokens "
          f"in the fp16 cache ({per_seq / 1e9:.3f} GB each, {layers} layers)", flush=True)
    if batch < 1:
        cap["note"] = "the budget holds no sequence"
        return cap
    measured = next((r for r in rows if r["status"] == "ok" and r["batch"] == batch and r["context"] == ctx), None)
    cap["measured_in_rows"] = measured is not None
    at = batch
    if measured is None:
        free = free_bytes()
        fit = int((free - reserve - overhead(batch)) // per_seq)
        at = min(batch, fit)
        if at < 1:
            cap["note"] = f"not even one sequence of {ctx} tokens fits the {free / 1e9:.1f} GB free"
            return cap
        try:
            measured = measure(torch, F, dev, dtype, timer, at, ctx, layers, gqa)
            finish_row(measured, at, ctx, layers, bytes_per_token * at * (ctx + 1))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            cap["note"] = f"measurement at batch {at} failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            print(f"capacity view: {cap['note']}", flush=True)
            return cap
    cap["measured_batch"] = at
    scale = batch / at
    if at != batch:
        cap["derived"] = (f"the card's free memory holds {at} sequences, not {batch}: step times measured at "
                          f"batch {at} and multiplied by {batch}/{at} (linear in batch: at {ctx} tokens the "
                          f"step streams the cache and its time grows with the bytes read)")
    for key in ("eager_wall_us", "kernel_only_us", "graph_us"):
        v = measured.get(key)
        step_us = v * scale if v else None
        cap["step_" + key] = step_us
        cap["tokens_per_s_" + key.replace("_us", "")] = batch / (step_us * 1e-6) if step_us else None
    if not cap["measured_in_rows"]:
        cap["measured_row"] = measured
    print(f"capacity view: batch {batch} x {ctx}{' (derived from batch %d, linear)' % at if at != batch else ''}: "
          f"step graph {fmt(cap['step_graph_us'], 1)} µs, kernel-only {fmt(cap['step_kernel_only_us'], 1)} µs, "
          f"eager wall {fmt(cap['step_eager_wall_us'], 1)} µs -> attention tokens/s graph "
          f"{fmt(cap['tokens_per_s_graph'], 1, 0)}, kernel-only {fmt(cap['tokens_per_s_kernel_only'], 1, 0)}, "
          f"eager {fmt(cap['tokens_per_s_eager_wall'], 1, 0)}", flush=True)
    return cap


if __name__ == "__main__":
    sys.exit(main())
