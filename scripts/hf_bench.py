#!/usr/bin/env python3
"""CPU speed of transformers' `generate` with the KVarN cache against DynamicCache (docs/PYTHON.md,
"Speed on the CPU"): SmolLM2-135M (fp32, the GGUF of scripts/fetch_model.sh), a prompt of L tokens
(Debian's GPL-3 then GPL-2 texts), then N greedy tokens. Prints prefill time, decode tokens/s
(from generate's own steps: a logits processor stamps each step) and the bytes each cache holds.

    python scripts/hf_bench.py --contexts 1024,4096,8192 --new-tokens 32 --threads 1
"""

import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LogitsProcessor, LogitsProcessorList

import kvarn_cl.transformers as kt

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Stamps(LogitsProcessor):
    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.environ.get("KVARN_CL_MODEL_DIR", os.path.join(repo, "models")))
    ap.add_argument("--contexts", default="1024,4096,8192")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--presets", default="k4v2_g128")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--recent-tokens", type=int, default=None,
                    help="exact recent-token window of the KVarN cache (default: the library's, 128)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model_dir, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, gguf_file=GGUF, dtype=torch.float32)
    model.set_attn_implementation(kt.ATTENTION)
    text = "".join(open(f"/usr/share/common-licenses/{n}", encoding="utf-8").read() + "\n\n" for n in ("GPL-3", "GPL-2"))
    all_ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, new tokens {args.new_tokens}")
    print(f"{'context':>7} {'cache':>18} {'prefill s':>9} {'decode tok/s':>12} {'held MB':>8} {'allocated MB':>12}")
    for ctx in [int(c) for c in args.contexts.split(",")]:
        ids = all_ids[:, :ctx]
        for name in ["DynamicCache"] + args.presets.split(","):
            cache = DynamicCache() if name == "DynamicCache" else \
                kt.KVarNCache(model, name, max_tokens=ctx + args.new_tokens, backend=args.backend,
                              recent_tokens=args.recent_tokens)
            stamps = Stamps()
            t0 = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), cache=cache, do_sample=False,
                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                           logits_processor=LogitsProcessorList([stamps]))
            prefill = stamps.times[0] - t0
            decode = (len(stamps.times) - 1) / (stamps.times[-1] - stamps.times[0])
            if name == "DynamicCache":
                held = alloc = sum(l.keys.nbytes + l.values.nbytes for l in cache.layers)
            else:
                rep, kv, seq = cache.memory_report(), cache.kv, cache._ids[0]
                quantized = sum(kv.quantized_tiles(seq, l) * kv.group for l in range(kv.layers))
                held = rep["records_in_use"] + (rep["live_tokens"] - quantized) * kv.kv_heads * kv.head_dim * 4
                alloc = rep["total"]
            print(f"{ctx:7d} {name:>18} {prefill:9.1f} {decode:12.2f} {held / 1e6:8.1f} {alloc / 1e6:12.1f}", flush=True)


if __name__ == "__main__":
    main()
