"""KVarN cache for Hugging Face transformers' ``model.generate`` (``pip install '.[hf]'``).

    import kvarn_cl.transformers as kt
    cache = kt.KVarNCache(model, preset="k4v2_g128", max_tokens=4096)
    out = model.generate(ids, cache=cache, attn_implementation=kt.ATTENTION, max_new_tokens=64)

Written against transformers 5.25 (the version pinned by the ``hf`` extra and by CI); it implements
two of its contracts, both read from that version's source:

- ``transformers.cache_utils.Cache`` made of one ``CacheLayerMixin`` per layer. A model's attention
  calls ``cache.update(key_states, value_states, layer_idx)`` with ``[B, Hk, T, D]`` keys *after*
  RoPE and attends over whatever ``update`` returns; masks are sized by ``get_mask_sizes``.
- ``AttentionInterface.register(name, fn)``: ``fn(module, query, key, value, attention_mask,
  scaling=, ...)`` returns ``([B, T, Hq, D], None)``; the matching mask function is registered in
  ``AttentionMaskInterface`` under the same name (the sdpa one: ``kvarn`` is sdpa except below).

Prefill (T > 1 on an empty cache) appends the prompt's K/V to the KVarN cache and lets the model
attend over the exact incoming K/V with sdpa, as it would without a cache. A decode step (T = 1)
appends the new token through ``KVCache.begin_step`` and, with ``attn_implementation="kvarn"``,
attends straight from the records with the library's fused attention: ``update`` then returns an
empty placeholder that only :func:`kvarn_attention` accepts. With any other attention
implementation (or a second multi-token chunk) ``update`` returns the cache's content decoded to
float (``KVCache.materialize``): correct for every attention function, but slower.

Covered: decoder-only models whose attention is Llama's (GQA, RoPE applied before the cache,
full attention): ``llama`` (tested in CI on SmolLM2-135M), and ``mistral``, ``qwen2``, ``qwen3``,
whose attention calls the cache in the same way, as long as no sliding window is configured.
Other model types raise :class:`kvarn_cl.Unsupported` naming the type. Tensors must be on the CPU;
a tensor on another device is refused (kvarn_cl's OpenCL backend has its own device memory, and a
silent host round trip per layer and token would hide the cost).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from . import KVCache, Unsupported

ATTENTION = "kvarn"
"""The ``attn_implementation`` name under which :func:`kvarn_attention` is registered."""

TESTED_TRANSFORMERS = "5.25.0"  # the version whose Cache and attention contracts this implements
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
FP16 = "fp16"
"""Preset name of the cache's exact mode: every token stays fp16 (nothing is quantized)."""


def _check_model(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise Unsupported(
            f"kvarn_cl.transformers: model type {model_type!r} is not supported; supported are "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (Llama-style attention: GQA, RoPE before the cache)")
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        raise Unsupported(f"kvarn_cl.transformers: model type {model_type!r} with sliding_window={window} "
                          "is not supported (the KVarN cache keeps every token)")


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _cpu(name: str, t: torch.Tensor) -> None:
    if t.device.type != "cpu":
        raise Unsupported(f"kvarn_cl.transformers: {name} is on device {t.device}; the KVarN cache takes "
                          "CPU tensors (move the model to the CPU)")


def _kv_dtype(t: torch.Tensor) -> torch.Tensor:
    # kvarn_cl reads float16/float32 in place; other dtypes (bfloat16) need one conversion.
    return t if t.dtype in (torch.float16, torch.float32) else t.float()


class KVarNLayer(CacheLayerMixin):
    """One layer of a :class:`KVarNCache`; its tokens live in the shared ``kvarn_cl.KVCache``."""

    is_croppable = False
    is_sliding = False

    def __init__(self, owner: "KVarNCache", layer: int):
        super().__init__()
        self.owner, self.layer, self.tokens = owner, layer, 0

    def lazy_initialization(self, key_states, value_states) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        _cpu("key_states", key_states)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        owner = self.owner
        batch, _, new, _ = key_states.shape
        ids = owner._sequences(batch)
        k, v = _kv_dtype(key_states), _kv_dtype(value_states)
        if new == 1 and self.tokens > 0 and owner._attention_is_kvarn():
            # A decode step: [B, Hk, 1, D] -> [B][Hk][D] is a view, read in place by the library.
            step = owner._step_for(self.layer, ids)
            step.append(self.layer, k.reshape(batch, k.shape[1], k.shape[3]).contiguous(),
                        v.reshape(batch, v.shape[1], v.shape[3]).contiguous())
            self.tokens += 1
            # kvarn_attention attends from the records; it recognizes this placeholder.
            marker = key_states.new_empty((batch, key_states.shape[1], 0, key_states.shape[3]))
            marker._kvarn_layer = self
            return marker, marker
        # Prefill (or a chunk): [B, Hk, T, D] -> [T][Hk][D] per sequence (one copy, the layout differs).
        for b, seq in enumerate(ids):
            owner.kv.append(seq, self.layer, k[b].transpose(0, 1).contiguous(), v[b].transpose(0, 1).contiguous())
        first = self.tokens == 0
        self.tokens += new
        if first:
            return key_states, value_states   # the model attends over the exact prompt, as without a cache
        return self._decoded(ids)

    def _decoded(self, ids):
        ks, vs = [], []
        for seq in ids:
            k, v = self.owner.kv.materialize(seq, self.layer)   # float16 [Hk][T][D], decoded
            ks.append(torch.from_numpy(k))
            vs.append(torch.from_numpy(v))
        return torch.stack(ks).to(self.dtype), torch.stack(vs).to(self.dtype)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.tokens + query_length, 0

    def get_seq_length(self) -> int:
        return self.tokens

    def get_max_length(self) -> int:
        return self.owner.max_tokens

    def reset(self) -> None:
        self.tokens = 0
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise Unsupported("kvarn_cl.transformers: KVarNCache cannot be cropped (assisted or speculative "
                          "decoding of transformers is not supported)")

    def reorder_cache(self, beam_idx) -> None:
        raise Unsupported("kvarn_cl.transformers: KVarNCache does not support beam search")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise Unsupported("kvarn_cl.transformers: KVarNCache does not support num_return_sequences > 1")

    def batch_select_indices(self, indices) -> None:
        raise Unsupported("kvarn_cl.transformers: KVarNCache does not support batch selection")


class KVarNCache(Cache):
    """A transformers ``Cache`` whose keys and values live in a :class:`kvarn_cl.KVCache`.

    ``model`` (or its config) fixes layers, KV heads and head_dim. ``preset``: a KVarN preset, or
    ``"fp16"`` to keep every token fp16 (the reference mode: the library's attention, no
    quantization). ``layer_presets`` (one per layer, or a ``kvarn-eval --calibrate`` file),
    ``recent_tokens``, ``sink_tokens``, ``backend`` and ``sinkhorn_iters`` go to ``KVCache``.
    ``recent_tokens=None`` (the default) takes the library's default window (``KVCache``'s: the
    newest 128 tokens stay fp16, the configuration that meets the 1 % perplexity bar,
    docs/ACCURACY.md "The default configuration"); ``0`` turns the window off.
    ``max_tokens`` (prompt + new tokens) and ``max_batch`` size its pools, all allocated here
    (``memory_report()['total']``); in the fp16 mode the unused record pool is allocated too.
    """

    def __init__(self, model, preset: str = "k4v2_g128", *, max_tokens: int = 4096, max_batch: int = 1,
                 recent_tokens: Optional[int] = None, sink_tokens: Optional[int] = None,
                 layer_presets: Union[None, str, Sequence[str]] = None, backend=None,
                 sinkhorn_iters: int = 8):
        config = getattr(model, "config", model)
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        _check_model(config)
        self.config, self.max_tokens, self.max_batch = config, int(max_tokens), int(max_batch)
        layers = config.num_hidden_layers
        kw = dict(layers=layers, kv_heads=config.num_key_value_heads, head_dim=_head_dim(config),
                  max_tokens=self.max_tokens, backend=backend, max_sequences=self.max_batch,
                  sink_tokens=sink_tokens, sinkhorn_iters=sinkhorn_iters, layer_presets=layer_presets)
        if recent_tokens is not None:   # omitted, KVCache applies the library's default window
            kw["recent_tokens"] = recent_tokens
        if preset == FP16:
            # Every committed token stays in the exact window, so no tile is ever quantized; the
            # records' preset is irrelevant then. The library bounds the window at 65536 tokens.
            if self.max_tokens > 65536:
                raise Unsupported(f"kvarn_cl.transformers: preset 'fp16' holds at most 65536 tokens, "
                                  f"max_tokens={self.max_tokens}")
            kw.update(recent_tokens=self.max_tokens, layer_presets=None)
        fp16 = preset == FP16
        self.kv = KVCache("k4v4_g64" if fp16 else preset, **kw)
        self.preset = FP16 if fp16 else self.kv.preset
        self._ids: list = []
        self._step, self._step_layers = None, []
        super().__init__(layers=[KVarNLayer(self, i) for i in range(layers)])

    def _attention_is_kvarn(self) -> bool:
        return getattr(self.config, "_attn_implementation", None) == ATTENTION

    def _sequences(self, batch: int) -> list:
        if not self._ids:
            if batch > self.max_batch:
                raise Unsupported(f"kvarn_cl.transformers: batch {batch} > max_batch={self.max_batch} of the KVarNCache")
            self._ids = [self.kv.add_sequence() for _ in range(batch)]
        elif batch != len(self._ids):
            raise Unsupported(f"kvarn_cl.transformers: batch {batch} differs from the cache's {len(self._ids)}")
        return self._ids

    def _step_for(self, layer: int, ids):
        # One DecodeStep per generated token: begun by the first layer, finished by the last
        # (after its attention, see _layer_done). A step left open by an exception in the model is
        # abandoned (the library rolls it back) and the layers' token counts with it.
        if layer == 0 and self._step is not None:
            self._abandon_step()
        if self._step is None:
            self._step = self.kv.begin_step(ids)
            self._step_layers = []
        self._step_layers.append(layer)
        return self._step

    def _abandon_step(self) -> None:
        self._step.abandon()
        for layer in self._step_layers:
            self.layers[layer].tokens -= 1
        self._step, self._step_layers = None, []

    def _layer_done(self, layer: int) -> None:
        if layer == len(self.layers) - 1 and self._step is not None:
            step, self._step = self._step, None
            step.finish()

    # A model asks for the cache's length and mask sizes before its first layer runs; a step still
    # open then was left by an exception inside the previous forward pass, and is rolled back first
    # so that positions and masks count only the tokens the cache holds.
    def get_seq_length(self, layer_idx: int = 0) -> int:
        if self._step is not None:
            self._abandon_step()
        return super().get_seq_length(layer_idx)

    def get_mask_sizes(self, query_length: int, layer_idx: int) -> tuple[int, int]:
        if self._step is not None:
            self._abandon_step()
        return super().get_mask_sizes(query_length, layer_idx)

    def memory_report(self) -> dict:
        """``KVCache.memory_report()`` of the underlying cache (bytes, by kind)."""
        return self.kv.memory_report()

    def reset(self) -> None:
        if self._step is not None:
            self._abandon_step()
        for seq in self._ids:
            self.kv.free(seq)
        self._ids = []
        super().reset()


def kvarn_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                    scaling: Optional[float] = None, **kwargs):
    """Attention function of ``attn_implementation="kvarn"``: a decode step of a KVarNCache reads
    the records with the library's fused attention; everything else is transformers' sdpa."""
    layer = getattr(key, "_kvarn_layer", None)
    if layer is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    _cpu("query", query)
    if attention_mask is not None:
        masked = ~attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
        if bool(masked.any()):
            raise Unsupported("kvarn_cl.transformers: masked (padded) positions in a decode step are not "
                              "supported by KVarNCache; generate one sequence per batch row without padding")
    batch, heads, _, dim = query.shape
    q = query.reshape(batch, heads, dim).float().contiguous()
    owner = layer.owner
    out = owner._step.attend(layer.layer, q, scale=scaling)      # float32 [B][Hq][D]
    owner._layer_done(layer.layer)
    return torch.from_numpy(np.asarray(out)).to(query.dtype).view(batch, 1, heads, dim), None


def teacher_forced_logits(model, input_ids: torch.Tensor, cache: Cache, prefill: int = 1) -> torch.Tensor:
    """Next-token logits at positions ``prefill-1 .. T-2`` of ``input_ids`` ``[1, T]``: a forward
    pass of the first ``prefill`` tokens, then one decode step per token, each fed the text's token
    (teacher forcing). Every step after the prefill attends through ``cache`` as ``generate``
    would, so a quantized cache is seen by each scored position. Returns ``[T - prefill, vocab]``
    float32 logits; row i predicts token ``prefill + i``."""
    rows = []
    with torch.no_grad():
        out = model(input_ids=input_ids[:, :prefill], cache=cache, use_cache=True)
        rows.append(out.logits[0, -1].float())
        for t in range(prefill, input_ids.shape[1] - 1):
            out = model(input_ids=input_ids[:, t:t + 1], cache=cache, use_cache=True)
            rows.append(out.logits[0, -1].float())
    return torch.stack(rows)


def register() -> str:
    """Registers ``kvarn`` with transformers' attention and mask interfaces (done on import)."""
    ALL_ATTENTION_FUNCTIONS.register(ATTENTION, kvarn_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return ATTENTION


register()

__all__ = ["ATTENTION", "FP16", "KVarNCache", "KVarNLayer", "SUPPORTED_MODEL_TYPES", "kvarn_attention",
           "register", "teacher_forced_logits"]
