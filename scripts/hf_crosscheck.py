#!/usr/bin/env python3
"""Independent check of kvarn-eval's forward pass (docs/ACCURACY.md, "Cross-check with transformers"):
the same text through Hugging Face transformers' Llama forward pass, teacher-forced one token per
decode step, with transformers' DynamicCache (fp32), the KVarN cache in its fp16 mode and KVarN
presets. Prints perplexity of tokens 2..N, and against the fp16 mode: mean/median/99.9% KL of the
next-token distributions and same top-1, the metrics of `kvarn-eval` (--configs fp16,<preset>...).

    python scripts/hf_crosscheck.py --text /usr/share/common-licenses/GPL-3 --ctx 512 \\
        --configs fp16,k4v2_g128,k4v4_g128
"""

import argparse
import os
import time

import numpy as np
import torch

import kvarn_cl.transformers as kt
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache


def metrics(logits, ref, targets):
    logp = torch.log_softmax(logits, -1)
    nll = -logp.gather(1, targets[:, None])[:, 0]
    out = {"ppl": float(torch.exp(nll.mean()))}
    if ref is not None:
        rlogp = torch.log_softmax(ref, -1)
        kl = (rlogp.exp() * (rlogp - logp)).sum(-1).clamp_min(0).numpy()
        out.update(kl_mean=float(kl.mean()), kl_median=float(np.median(kl)),
                   kl_p999=float(np.percentile(kl, 99.9)),
                   top1=float((logits.argmax(-1) == ref.argmax(-1)).float().mean()))
    return out


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.environ.get("KVARN_CL_MODEL_DIR", os.path.join(repo, "models")))
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    ap.add_argument("--ctx", type=int, default=512, help="tokens scored from the start of the text")
    ap.add_argument("--configs", default="fp16,k4v2_g128,k4v4_g128",
                    help="KVarNCache presets ('fp16' = every token fp16); DynamicCache is always run")
    # kvarn-eval's configuration names state the window (k4v2_g128 there has none, k4v2_g128+r128
    # has 128 tokens), so the presets run window-less here unless asked.
    ap.add_argument("--recent-tokens", type=int, default=0,
                    help="exact recent-token window of the KVarN presets (default 0, as kvarn-eval's names)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(args.model_dir, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, gguf_file=gguf, dtype=torch.float32)
    model.set_attn_implementation(kt.ATTENTION)
    with open(args.text, encoding="utf-8") as f:
        ids = tok(f.read(), return_tensors="pt", add_special_tokens=False).input_ids[:, :args.ctx]
    targets = ids[0, 1:]
    print(f"text {args.text}: {ids.shape[1]} tokens (first ids {ids[0, :8].tolist()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    runs = {}
    for name in ["DynamicCache"] + args.configs.split(","):
        cache = DynamicCache() if name == "DynamicCache" else \
            kt.KVarNCache(model, name, max_tokens=args.ctx + 8, recent_tokens=args.recent_tokens)
        t = time.time()
        runs[name] = kt.teacher_forced_logits(model, ids, cache, prefill=1)
        ref = runs.get("fp16")
        m = metrics(runs[name], ref if name != "DynamicCache" else None, targets)
        dyn = metrics(runs[name], runs["DynamicCache"], targets) if name != "DynamicCache" else {}
        print(f"{name:13s} PPL {m['ppl']:.3f}"
              + (f"  vs fp16: mean KL {m['kl_mean']:.2e} median {m['kl_median']:.2e} 99.9% {m['kl_p999']:.2e}"
                 f" same top-1 {100 * m['top1']:.2f}%" if "top1" in m else "")
              + (f"  vs DynamicCache: mean KL {dyn['kl_mean']:.2e} same top-1 {100 * dyn['top1']:.2f}%" if dyn else "")
              + f"  ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
