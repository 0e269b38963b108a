"""kvarn_cl.transformers: the KVarN cache inside Hugging Face transformers' `generate`.

On SmolLM2-135M (the GGUF of scripts/fetch_model.sh, dequantized to fp32 by transformers + gguf):
greedy generation through the cache's fp16 mode equals transformers' own DynamicCache token for
token; with k4v2_g128 / k4v4_g128 the next-token agreement, KL and perplexity after a prompt whose
tiles are quantized stay within bounds measured on this model (docs/PYTHON.md), window off and in
the default configuration a user gets (the library's 128-token exact window); the memory the cache
holds is what memory_report() says. Without the model file, on a tiny random Llama: the decode path
through the library's attention against the materialize path, and the refusals.

Skipped without torch/transformers (the `hf` extra) or the model, unless KVARN_CL_REQUIRE_HF=1
(.ci/transformers.sh sets it), which turns every such skip into a failure.
"""

import os

import pytest

REQUIRE = os.environ.get("KVARN_CL_REQUIRE_HF") == "1"
if not REQUIRE:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LlamaConfig, LlamaForCausalLM  # noqa: E402

import kvarn_cl  # noqa: E402
import kvarn_cl.transformers as kt  # noqa: E402
from conftest import REPO  # noqa: E402

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = "/usr/share/common-licenses/GPL-3"


@pytest.fixture(scope="module")
def smollm():
    model_dir = os.environ.get("KVARN_CL_MODEL_DIR", os.path.join(REPO, "models"))
    if not os.path.exists(os.path.join(model_dir, GGUF)):
        if REQUIRE:
            pytest.fail(f"{GGUF} not in {model_dir} (scripts/fetch_model.sh fetches it)")
        pytest.skip(f"{GGUF} not in {model_dir} (scripts/fetch_model.sh)")
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=GGUF, dtype=torch.float32)
    model.set_attn_implementation(kt.ATTENTION)
    return tok, model


@pytest.fixture(scope="module")
def text_ids(smollm):
    tok, _ = smollm
    if not os.path.exists(TEXT):
        pytest.skip(f"{TEXT} missing (Debian's base-files)")
    with open(TEXT, encoding="utf-8") as f:
        return tok(f.read(), return_tensors="pt", add_special_tokens=False).input_ids


def greedy(model, ids, cache, new_tokens):
    out = model.generate(ids, attention_mask=torch.ones_like(ids), cache=cache, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False)
    return out[0, ids.shape[1]:]


def test_fp16_mode_greedy_equals_dynamic_cache(smollm, text_ids):
    """200 prompt tokens (past the 128-token sink) then 24 greedy tokens: identical."""
    _, model = smollm
    ids = text_ids[:, :200]
    want = greedy(model, ids, DynamicCache(), 24)
    cache = kt.KVarNCache(model, kt.FP16, max_tokens=256)
    got = greedy(model, ids, cache, 24)
    assert got.tolist() == want.tolist()
    assert cache.get_seq_length() == 200 + 24 - 1   # the last token is returned, not cached
    report = cache.memory_report()
    assert report["records_in_use"] == 0             # fp16 mode: nothing quantized
    assert report["live_tokens"] == model.config.num_hidden_layers * cache.get_seq_length()


def test_chat_prompt_fp16_mode_equals_dynamic_cache(smollm):
    tok, model = smollm
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    want = greedy(model, ids, DynamicCache(), 16)
    assert greedy(model, ids, kt.KVarNCache(model, kt.FP16, max_tokens=128), 16).tolist() == want.tolist()


# Bounds for the 64 teacher-forced positions 320..383 of GPL-3 after a 320-token prefill (tokens
# 128..255 in records, 256..383 joining them at position 383), against DynamicCache, with the recent
# window off (recent_tokens=0: at this length the default window would keep every token exact, so
# these tests see the quantized path; the default is tested below on a longer text). Measured on
# 2026-12-06 (torch 2.15.0 CPU, transformers 5.25.0, 1 thread):
#   k4v4_g128: same top-1 98.4% (63/64), mean KL 1.44e-03, PPL 16.334 vs 16.427 (ratio 0.994)
#   k4v2_g128: same top-1 96.9% (62/64), mean KL 7.34e-03, PPL 16.407 vs 16.427 (ratio 0.999)
# The bounds leave a margin of about 3.5x in KL, 2-4 positions in top-1 and 2-3% in perplexity; a
# cache that dropped or garbled tiles fails them, and a KL of zero would mean nothing was quantized.
BOUNDS = {  # preset: (min same top-1, max mean KL, max PPL ratio)
    "k4v4_g128": (0.95, 5e-3, 1.02),
    "k4v2_g128": (0.90, 2.5e-2, 1.03),
}


def kl_and_top1(logits, ref):
    logp, rlogp = torch.log_softmax(logits, -1), torch.log_softmax(ref, -1)
    kl = (rlogp.exp() * (rlogp - logp)).sum(-1)
    return float(kl.mean()), float((logits.argmax(-1) == ref.argmax(-1)).float().mean())


def ppl(logits, targets):
    return float(torch.exp(torch.nn.functional.cross_entropy(logits, targets)))


@pytest.fixture(scope="module")
def dynamic_reference(smollm, text_ids):
    _, model = smollm
    ids = text_ids[:, :385]
    return ids, kt.teacher_forced_logits(model, ids, DynamicCache(), prefill=320)


@pytest.mark.parametrize("preset", sorted(BOUNDS))
def test_quantized_agreement_perplexity_and_memory(smollm, dynamic_reference, preset, capsys):
    _, model = smollm
    ids, ref = dynamic_reference
    cache = kt.KVarNCache(model, preset, max_tokens=512, recent_tokens=0)
    logits = kt.teacher_forced_logits(model, ids, cache, prefill=320)
    targets = ids[0, 320:]
    kl, top1 = kl_and_top1(logits, ref)
    ratio = ppl(logits, targets) / ppl(ref, targets)
    with capsys.disabled():
        print(f"\n{preset}: same top-1 {100 * top1:.1f}%, mean KL {kl:.2e}, PPL {ppl(logits, targets):.3f} "
              f"vs DynamicCache {ppl(ref, targets):.3f} (ratio {ratio:.4f})")
    min_top1, max_kl, max_ratio = BOUNDS[preset]
    assert top1 >= min_top1 and 1e-5 < kl <= max_kl and ratio <= max_ratio

    # Memory: the records are those of the complete tiles after the sink, per layer and KV head.
    kv = cache.kv
    cfg = model.config
    tokens = ids.shape[1] - 1
    seq = cache._ids[0]
    report = cache.memory_report()
    tiles = [kv.quantized_tiles(seq, layer) for layer in range(cfg.num_hidden_layers)]
    assert tiles == [(tokens - kv.sink_tokens) // kv.group] * cfg.num_hidden_layers
    assert report["records_in_use"] == sum(t * cfg.num_key_value_heads * rb
                                           for t, rb in zip(tiles, kv.layer_record_bytes))
    assert report["live_tokens"] == cfg.num_hidden_layers * tokens
    dyn = DynamicCache()
    with torch.no_grad():
        model(input_ids=ids[:, :tokens], cache=dyn, use_cache=True)
    dyn_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in dyn.layers)
    assert report["fp16_equivalent"] * 2 == dyn_bytes   # fp32 DynamicCache vs the same tokens in fp16
    assert report["records_in_use"] < report["fp16_equivalent"] / 2


# KVarNCache(model) as a user gets it: the library's default configuration (k4v2_g128 with the
# newest 128 tokens exact, docs/ACCURACY.md "The default configuration"), on the 65 teacher-forced
# positions 960..1024 of GPL-3 after a 960-token prefill, so that tiles 128..767 are in records at
# the first position (the window keeps 768..895 exact, the filling tile 896..959). The same cache
# without the window runs alongside: the window must bring the cache closer to DynamicCache.
# Measured on 2026-12-06 (torch 2.15.0 CPU, transformers 5.25.0, 1 thread):
#   default (window 128): same top-1 100% (65/65), mean KL 2.54e-03, PPL 20.999 vs 20.865 (ratio 1.0064)
#   window off:           same top-1 96.9% (63/65), mean KL 9.47e-03, PPL 20.952 vs 20.865 (ratio 1.0041)
# 65 positions are too few to resolve a 1 % perplexity bar (the window-less cache scores the lower
# perplexity here although its KL is 3.7x larger; docs/ACCURACY.md measures the bar on 2048-token
# texts), so the bounds leave a margin of about 4x in KL, 5 positions in top-1 and 1.4 % in
# perplexity, and the window must cut the mean KL at least in half.
DEFAULT_BOUNDS = (0.92, 1e-2, 1.02)   # (min same top-1, max mean KL, max PPL ratio)


def test_default_configuration_is_the_librarys_and_closer_than_without_window(smollm, text_ids, capsys):
    _, model = smollm
    library = kvarn_cl.KVCache()
    ids = text_ids[:, :1025]
    targets = ids[0, 960:]
    ref = kt.teacher_forced_logits(model, ids, DynamicCache(), prefill=960)
    cache = kt.KVarNCache(model, max_tokens=1024)
    assert (cache.preset, cache.kv.recent_tokens) == (library.preset, library.recent_tokens) == ("k4v2_g128", 128)
    logits = kt.teacher_forced_logits(model, ids, cache, prefill=960)
    off = kt.teacher_forced_logits(model, ids, kt.KVarNCache(model, max_tokens=1024, recent_tokens=0), prefill=960)
    kl, top1 = kl_and_top1(logits, ref)
    kl_off, top1_off = kl_and_top1(off, ref)
    ratio = ppl(logits, targets) / ppl(ref, targets)
    with capsys.disabled():
        print(f"\ndefault k4v2_g128+r128: same top-1 {100 * top1:.1f}%, mean KL {kl:.2e}, PPL {ppl(logits, targets):.3f} "
              f"vs DynamicCache {ppl(ref, targets):.3f} (ratio {ratio:.4f}); window off: same top-1 "
              f"{100 * top1_off:.1f}%, mean KL {kl_off:.2e}, PPL ratio {ppl(off, targets) / ppl(ref, targets):.4f}")
    min_top1, max_kl, max_ratio = DEFAULT_BOUNDS
    assert top1 >= min_top1 and 1e-5 < kl <= max_kl and ratio <= max_ratio
    assert kl < kl_off / 2
    # 1024 tokens cached: sink 0..127, records 128..895 (6 tiles), the window 896..1023 exact.
    seq, cfg = cache._ids[0], model.config
    assert [cache.kv.quantized_tiles(seq, layer) for layer in range(cfg.num_hidden_layers)] == [6] * cfg.num_hidden_layers
    assert cache.memory_report()["exact_recent_tokens"] == 128 * cfg.num_hidden_layers


# A tiny random Llama (no download): the library's fused decode attention against the
# materialize path (sdpa over the decoded cache), both reading the same KVarN cache.
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=1024)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("preset", [kt.FP16, "k4v2_g64"])
def test_fused_decode_equals_materialize_path(tiny, preset):
    ids = torch.randint(0, 300, (1, 200), generator=torch.Generator().manual_seed(1))
    outs = {}
    for impl in (kt.ATTENTION, "sdpa"):
        tiny.set_attn_implementation(impl)
        cache = kt.KVarNCache(tiny, preset, max_tokens=256, recent_tokens=0)   # tiles in records
        outs[impl] = kt.teacher_forced_logits(tiny, ids, cache, prefill=100)
    tiny.set_attn_implementation("sdpa")
    torch.testing.assert_close(outs[kt.ATTENTION], outs["sdpa"], rtol=2e-3, atol=2e-3)


def test_forward_that_fails_mid_step_is_rolled_back(tiny):
    """An exception between two layers of a decode step: the next forward sees the cache as it was,
    and continues exactly as a cache that never saw the failed step."""
    tiny.set_attn_implementation(kt.ATTENTION)
    ids = torch.randint(0, 300, (1, 80), generator=torch.Generator().manual_seed(2))

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    caches = [kt.KVarNCache(tiny, "k4v2_g64", max_tokens=128) for _ in range(2)]
    logits = []
    with torch.no_grad():
        for i, cache in enumerate(caches):
            tiny(input_ids=ids[:, :70], cache=cache, use_cache=True)
            if i == 1:
                hook = tiny.model.layers[1].self_attn.register_forward_pre_hook(boom)
                with pytest.raises(RuntimeError, match="boom"):
                    tiny(input_ids=ids[:, 70:71], cache=cache, use_cache=True)
                hook.remove()
            assert cache.get_seq_length() == 70 and cache.layers[1].get_seq_length() == 70
            logits.append(tiny(input_ids=ids[:, 70:72], cache=cache, use_cache=True).logits)
            logits[-1] = torch.cat([logits[-1], tiny(input_ids=ids[:, 72:73], cache=cache, use_cache=True).logits], 1)
    tiny.set_attn_implementation("sdpa")
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=0)


def test_unsupported_model_type_is_refused():
    from transformers import GPT2Config
    with pytest.raises(kvarn_cl.Unsupported, match="'gpt2'"):
        kt.KVarNCache(GPT2Config())


def test_other_device_and_batch_limits_are_refused(tiny):
    tiny.set_attn_implementation(kt.ATTENTION)
    cache = kt.KVarNCache(tiny, kt.FP16, max_tokens=64)
    with pytest.raises(kvarn_cl.Unsupported, match="max_batch"):
        with torch.no_grad():
            tiny(input_ids=torch.zeros((2, 4), dtype=torch.long), cache=cache, use_cache=True)
    layer = cache.layers[0]
    with pytest.raises(kvarn_cl.Unsupported, match="device meta"):
        layer.update(torch.zeros((1, 2, 1, 64), device="meta"), torch.zeros((1, 2, 1, 64), device="meta"))
    with pytest.raises(kvarn_cl.Unsupported, match="beam search"):
        cache.reorder_cache(torch.tensor([0]))


def test_transformers_example_runs(smollm):
    """examples/transformers_generate.py (the README's transformers command) on a short prompt."""
    import re
    import subprocess
    import sys
    script = os.path.join(REPO, "examples", "transformers_generate.py")
    # 600 tokens of the document: past the sink and the default 128-token window, so tiles are quantized.
    r = subprocess.run([sys.executable, script, "--doc-tokens", "600", "--new-tokens", "8", "--preset", "k4v4_g128"],
                       capture_output=True, text=True, check=True)
    agree = float(re.search(r"next-token agreement on the same 8 positions: ([0-9.]+)%", r.stdout).group(1))
    kl = float(re.search(r"KL\(DynamicCache \|\| KVarN\) of the next-token distribution: mean ([0-9.e+-]+)",
                         r.stdout).group(1))
    saved = float(re.search(r"= ([0-9.]+)x smaller than fp16", r.stdout).group(1))
    assert agree >= 75.0 and 0 < kl < 0.05 and saved > 1.0


def test_decode_step_reads_torch_tensors_in_place(tiny):
    """A decode step's [B, Hk, 1, D] K/V reach the library as views of the model's tensors (DLPack),
    not copies: the addresses the C++ code read are the tensors' own."""
    tiny.set_attn_implementation(kt.ATTENTION)
    cache = kt.KVarNCache(tiny, "k4v2_g64", max_tokens=64)
    with torch.no_grad():
        tiny(input_ids=torch.zeros((1, 5), dtype=torch.long), cache=cache, use_cache=True)
    k, v = torch.randn(1, 2, 1, 64), torch.randn(1, 2, 1, 64)
    cache.layers[0].update(k, v)
    seen = set(kvarn_cl._kvarn_cl._addresses().values())
    assert k.data_ptr() in seen and v.data_ptr() in seen
    assert cache.get_seq_length() == 5   # the open step is rolled back
    tiny.set_attn_implementation("sdpa")
