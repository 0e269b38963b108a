"""KVCache: attention against numpy references (over what the cache holds, decoded by the
independent reference; and exact fp32 attention), batches of sequences of different lengths
with GQA, commit / rollback / free, memory accounting, no copies, errors; CPU and OpenCL."""

import numpy as np
import pytest

import kvarn_cl
from conftest import kv_with_outliers
from helpers import cache_reference_attention, exact_attention

D, HK, HQ = 64, 2, 4


def make_cache(backend, **kw):
    args = dict(preset="k4v2_g128", layers=2, kv_heads=HK, head_dim=D, max_tokens=1024,
                backend=backend, max_sequences=4,
                recent_tokens=0)  # tiles quantize as soon as complete; the default window has its own tests
    args.update(kw)
    return kvarn_cl.KVCache(**args)


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_decode_loop_matches_references(backend):
    """Prefill three sequences of different lengths, decode a few steps, and check every step's
    attention (both layers) against attention over the cache's own content decoded in fp32 by
    the independent reference (SPEC §5: ~1e-4), and the cache's records against quantize()."""
    rng = np.random.default_rng(11)
    cache = make_cache(backend)
    lengths = [130, 300, 517]  # sink only + tail; one tile; several tiles
    seqs = [cache.add_sequence() for _ in lengths]
    history = {}
    for layer in range(2):
        for s, n in zip(seqs, lengths):
            k, v = kv_with_outliers(rng, (n, HK, D), np.float32)
            cache.append(s, layer, k, v)
            history[s, layer] = (k, v)
    for step in range(3):
        for layer in range(2):
            k, v = kv_with_outliers(rng, (len(seqs), 1, HK, D), np.float32)
            cache.append(seqs, layer, k, v)  # one token per sequence, [B][1][Hk][D]
            for i, s in enumerate(seqs):
                hk, hv = history[s, layer]
                history[s, layer] = (np.concatenate([hk, k[i]]), np.concatenate([hv, v[i]]))
            q = rng.standard_normal((len(seqs), HQ, D)).astype(np.float32)
            out = cache.attend(layer, q, seqs=seqs)
            assert out.shape == (len(seqs), HQ, D) and out.dtype == np.float32
            for i, s in enumerate(seqs):
                assert cache.length(s, layer) == lengths[i] + step + 1
                ref = cache_reference_attention(cache.snapshot(s, layer), q[i], "k4v2_g128", D)
                assert rel_err(out[i], ref) < 2e-4, (s, layer, step)
    assert cache.quantized_tiles(seqs[2], 1) == (517 + 3 - 128) // 128
    # the cache's tiles are exactly quantize() of the same rows (sink = first tile), per head
    k, v = history[seqs[2], 1]
    records = cache.snapshot(seqs[2], 1)["records"]
    for h in range(HK):
        want = kvarn_cl.quantize(np.ascontiguousarray(k[128:128 + 128 * 3, h]),
                                 np.ascontiguousarray(v[128:128 + 128 * 3, h]), backend=backend)
        np.testing.assert_array_equal(records[:, h], want)
    # both attention paths agree
    q = rng.standard_normal((len(seqs), HQ, D)).astype(np.float32)
    fused = cache.attend(1, q, seqs=seqs)
    mat = cache.attend(1, q, seqs=seqs, path="materialize")
    assert rel_err(mat, fused) < 5e-3  # materialize rounds the decoded rows to fp16
    # same call twice: bit-identical
    np.testing.assert_array_equal(cache.attend(1, q, seqs=seqs), fused)


def test_fp16_tokens_match_exact_attention(backend):
    """Tokens still in the sink and tail are fp16: attention matches exact fp32 attention to
    fp16 accuracy."""
    rng = np.random.default_rng(12)
    cache = make_cache(backend, layers=1)
    s = cache.add_sequence()
    k, v = kv_with_outliers(rng, (100, HK, D), np.float16)
    cache.append(s, 0, k, v)
    assert cache.quantized_tiles(s) == 0
    q = rng.standard_normal((1, HQ, D)).astype(np.float32)
    out = cache.attend(0, q, seqs=[s])
    assert rel_err(out[0], exact_attention(q[0], k, v)) < 3e-3
    out16 = cache.attend(0, q, seqs=[s], dtype=np.float16)
    assert out16.dtype == np.float16
    np.testing.assert_allclose(out16.astype(np.float32), out, rtol=2e-3, atol=2e-3 * np.abs(out).max())
    # materialize gives the rows back (original frame, fp16 rounding of the rotation round trip)
    mk, mv = cache.materialize(s, 0)
    assert mk.shape == (HK, 100, D) and mk.dtype == np.float16
    np.testing.assert_allclose(mk.astype(np.float32), k.transpose(1, 0, 2).astype(np.float32),
                               rtol=2e-3, atol=2e-3 * float(np.abs(k).max()))


def test_batched_append_forms_agree(cpu):
    """One sequence at a time, [B][T][Hk][D] and tokens= with [sum][Hk][D] store the same cache;
    float16 and float32 input holding the same values too."""
    rng = np.random.default_rng(13)
    k, v = kv_with_outliers(rng, (2, 200, HK, D), np.float16)
    caches = [make_cache(cpu, layers=1) for _ in range(4)]
    ids = [[c.add_sequence(), c.add_sequence()] for c in caches]
    for i in range(2):
        caches[0].append(ids[0][i], 0, k[i], v[i])
    caches[1].append(ids[1], 0, k, v)
    caches[2].append(ids[2], 0, k.reshape(400, HK, D), v.reshape(400, HK, D), tokens=[200, 200])
    caches[3].append(np.array(ids[3]), 0, k.astype(np.float32), v.astype(np.float32))  # ids as an array
    q = rng.standard_normal((2, HQ, D)).astype(np.float32)
    outs = [c.attend(0, q, seqs=i) for c, i in zip(caches, ids)]
    # an integer scalar id; a batch of one may split the work differently: fp32 noise only
    np.testing.assert_allclose(caches[0].attend(0, q[:1], seqs=np.int64(ids[0][0])), outs[0][:1],
                               rtol=1e-5, atol=1e-6)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    snaps = [c.snapshot(i[1]) for c, i in zip(caches, ids)]
    for sn in snaps[1:]:
        np.testing.assert_array_equal(sn["records"], snaps[0]["records"])


def test_speculative_commit_rollback_free(backend):
    rng = np.random.default_rng(14)
    cache = make_cache(backend, layers=2)
    s = cache.add_sequence()
    for layer in range(2):
        k, v = kv_with_outliers(rng, (250, HK, D), np.float32)
        cache.append(s, layer, k, v)
    q = rng.standard_normal((1, HQ, D)).astype(np.float32)
    before = [cache.attend(layer, q, seqs=[s]) for layer in range(2)]
    for layer in range(2):
        k, v = kv_with_outliers(rng, (10, HK, D), np.float32)
        cache.append(s, layer, k, v, speculative=True)
    assert cache.length(s) == 260 and cache.committed(s) == 250 and cache.quantized_tiles(s) == 0
    assert not np.array_equal(cache.attend(0, q, seqs=[s]), before[0])  # speculative tokens attended
    cache.rollback(s)
    assert cache.length(s, 1) == 250
    for layer in range(2):
        np.testing.assert_array_equal(cache.attend(layer, q, seqs=[s]), before[layer])
    for layer in range(2):
        k, v = kv_with_outliers(rng, (10, HK, D), np.float32)
        cache.append(s, layer, k, v, speculative=True)
    cache.commit(s, 6)
    assert cache.committed(s) == 256 and cache.quantized_tiles(s) == 1  # the second tile completed
    cache.commit([s])
    assert cache.committed(s, 1) == 260
    assert s in cache and len(cache) == 1
    cache.free(s)
    assert s not in cache and len(cache) == 0
    with pytest.raises(kvarn_cl.InvalidArgument):
        cache.attend(0, q, seqs=[s])


def test_memory_report(backend):
    rng = np.random.default_rng(15)
    cache = make_cache(backend)
    a, b = cache.add_sequence(), cache.add_sequence()
    for layer in range(2):
        for s, n in ((a, 300), (b, 40)):
            k, v = kv_with_outliers(rng, (n, HK, D), np.float32)
            cache.append(s, layer, k, v)
    cache.attend(0, rng.standard_normal((2, HQ, D)).astype(np.float32), seqs=[a, b])
    m = cache.memory_report()
    parts = ("records", "sink", "tail", "block_tables", "seq_info", "workspaces")
    assert m["total"] == sum(m[p] for p in parts)
    assert m["exact_recent_tokens"] == 0
    assert all(m[p] > 0 for p in parts)
    assert m["records_in_use"] == 2 * 1 * HK * cache.record_bytes  # layers x tiles x heads x bytes
    assert m["live_tokens"] == 2 * 340
    assert m["fp16_equivalent"] == m["live_tokens"] * HK * D * 2 * 2
    assert cache.record_bytes == kvarn_cl.record_bytes("k4v2_g128", D)
    # sink and tail pools: K and V, fp16, every layer and sequence slot
    assert m["sink"] == 2 * 2 * cache.layers * cache.max_sequences * HK * cache.sink_tokens * D
    assert m["tail"] == 2 * 2 * cache.layers * cache.max_sequences * HK * cache.tail_capacity * D


def test_no_copies(cpu):
    """Keys, values and queries are read in place and attention writes straight into the result
    (or into out=)."""
    rng = np.random.default_rng(16)
    cache = make_cache(cpu)
    s = cache.add_sequence()
    k, v = kv_with_outliers(rng, (200, HK, D), np.float16)
    cache.append(s, 0, k, v)
    addr = kvarn_cl._kvarn_cl._addresses()
    assert addr["append:k"] == k.ctypes.data and addr["append:v"] == v.ctypes.data
    q = rng.standard_normal((1, HQ, D)).astype(np.float32)
    out = cache.attend(0, q, seqs=[s])
    addr = kvarn_cl._kvarn_cl._addresses()
    assert addr["attend:q"] == q.ctypes.data and addr["attend:out"] == out.ctypes.data
    given = np.empty((1, HQ, D), np.float16)
    assert cache.attend(0, q, seqs=[s], out=given) is given
    assert kvarn_cl._kvarn_cl._addresses()["attend:out"] == given.ctypes.data
    np.testing.assert_allclose(given.astype(np.float32), out, rtol=2e-3, atol=1e-3)


def test_bad_input(cpu):
    rng = np.random.default_rng(17)
    E = kvarn_cl.InvalidArgument
    cache = make_cache(cpu, max_sequences=2)
    s = cache.add_sequence()
    k, v = kv_with_outliers(rng, (10, HK, D), np.float32)
    with pytest.raises(E, match=r"append: k has shape \(10, 3, 64\), expected \[T\]\[2\]\[64\]"):
        cache.append(s, 0, np.zeros((10, 3, D), np.float32), np.zeros((10, 3, D), np.float32))
    with pytest.raises(E, match=r"append: k is float32 but v is float16"):
        cache.append(s, 0, k, v.astype(np.float16))
    with pytest.raises(E, match=r"append: k: dtype float64"):
        cache.append(s, 0, k.astype(np.float64), v.astype(np.float64))
    with pytest.raises(E, match=r"append: k: the array is not C-contiguous"):
        cache.append(s, 0, k.transpose(1, 0, 2).copy().transpose(1, 0, 2), v)
    with pytest.raises(E, match=r"tokens add up to 9 but k has 10 rows"):
        cache.append([s], 0, k, v, tokens=[9])
    with pytest.raises(E, match=r"layer"):
        cache.append(s, 5, k, v)
    with pytest.raises(E, match=r"seq: -1 is not a sequence id"):
        cache.append(-1, 0, k, v)
    with pytest.raises(E):
        cache.append(12345, 0, k, v)  # never handed out
    kn = k.copy()
    kn[3, 1, 5] = np.nan
    with pytest.raises(kvarn_cl.NonFiniteInput, match=r"token 3, head 1, channel 5 is nan"):
        cache.append(s, 0, kn, v)
    assert cache.length(s) == 0  # on an error nothing changes
    cache.append(s, 0, k, v)
    q = rng.standard_normal((1, HQ, D)).astype(np.float32)
    with pytest.raises(E, match=r"attend: q has shape \(4, 64\), expected \[1\]\[Hq\]\[64\]"):
        cache.attend(0, q[0], seqs=[s])
    with pytest.raises(E):  # Hq = 3 is not a multiple of Hk = 2
        cache.attend(0, np.zeros((1, 3, D), np.float32), seqs=[s])
    qn = q.copy()
    qn[0, 2, 7] = np.inf
    with pytest.raises(kvarn_cl.NonFiniteInput, match=r"q\[0\]\[2\]\[7\] is inf"):
        cache.attend(0, qn, seqs=[s])
    with pytest.raises(E, match=r"path 'fast'"):
        cache.attend(0, q, seqs=[s], path="fast")
    with pytest.raises(E, match=r"out has shape"):
        cache.attend(0, q, seqs=[s], out=np.empty((2, HQ, D), np.float32))
    cache.add_sequence()
    with pytest.raises(kvarn_cl.OutOfMemory):
        cache.add_sequence()  # max_sequences = 2
    with pytest.raises(E, match=r"head_dim 96"):
        make_cache(cpu, head_dim=96)
    with pytest.raises(E, match=r"layers 0"):
        make_cache(cpu, layers=0)
    with pytest.raises(E, match=r"max_uncommitted 200"):
        make_cache(cpu, max_uncommitted=200)
    with pytest.raises(E, match=r"k4v3"):
        make_cache(cpu, preset="k4v3")


def test_threads_share_a_backend(backend):
    """The GIL is released while the library works; calls that share a backend from several
    threads give the results of the same calls made one after the other."""
    import threading

    rng = np.random.default_rng(18)
    kv = [kv_with_outliers(rng, (256, 64)) for _ in range(4)]
    want = [kvarn_cl.quantize(k, v, backend=backend) for k, v in kv]
    caches = [make_cache(backend, layers=1) for _ in range(2)]
    seqs = [c.add_sequence() for c in caches]
    q = rng.standard_normal((1, HQ, D)).astype(np.float32)
    k, v = kv_with_outliers(rng, (300, HK, D), np.float32)
    for c, s in zip(caches, seqs):
        c.append(s, 0, k, v)
    want_out = caches[0].attend(0, q, seqs=[seqs[0]])
    got, errors = {}, []

    def work(i):
        try:
            for _ in range(3):
                got[i] = kvarn_cl.quantize(*kv[i], backend=backend)
                got["attend", i % 2] = caches[i % 2].attend(0, q, seqs=[seqs[i % 2]])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        np.testing.assert_array_equal(got[i], want[i])
    for i in range(2):
        np.testing.assert_array_equal(got["attend", i], want_out)


def test_layer_presets_and_recent_tokens(backend, tmp_path):
    """Per-layer presets (a list, or a layer-preset file) give each layer its own records, checked
    against the reference like the default cache; recent_tokens keeps the newest tokens fp16."""
    rng = np.random.default_rng(19)
    path = tmp_path / "layers.txt"
    path.write_text("# kvarn_cl layer presets\n0 k4v4_g128\n1 k2v2_g128\n")
    assert kvarn_cl.read_layer_presets(str(path)) == ["k4v4_g128", "k2v2_g128"]
    for layer_presets in (["k4v4_g128", "k2v2_g128"], str(path)):
        cache = make_cache(backend, layer_presets=layer_presets, recent_tokens=128)
        assert cache.layer_presets == ["k4v4_g128", "k2v2_g128"] and cache.preset == "k4v4_g128"
        assert cache.layer_record_bytes == [kvarn_cl.record_bytes(p, D) for p in cache.layer_presets]
        assert cache.recent_tokens == 128
        s = cache.add_sequence()
        q = rng.standard_normal((1, HQ, D)).astype(np.float32)
        for layer, preset in enumerate(cache.layer_presets):
            k, v = kv_with_outliers(rng, (520, HK, D), np.float32)
            cache.append(s, layer, k, v)
            # sink 128, then tiles older than the newest 128 tokens: 2 of the 3 complete ones
            assert cache.quantized_tiles(s, layer) == 2
            snap = cache.snapshot(s, layer)
            assert snap["records"].shape == (2, HK, kvarn_cl.record_bytes(preset, D))
            out = cache.attend(layer, q, seqs=[s])
            ref = cache_reference_attention(snap, q[0], preset, D)
            assert rel_err(out[0], ref) < 2e-4
        m = cache.memory_report()
        assert m["exact_recent_tokens"] == 2 * 128
        assert m["records_in_use"] == 2 * HK * sum(cache.layer_record_bytes)
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"layer_presets\[1\]"):
        make_cache(backend, layer_presets=["k4v4_g128", "k9"])
    with pytest.raises(kvarn_cl.InvalidArgument):  # G 128 and 64 cannot share a block table
        make_cache(backend, layer_presets=["k4v4_g128", "k4v2_g64"])
    with pytest.raises(kvarn_cl.IoError):
        make_cache(backend, layer_presets=str(tmp_path / "missing.txt"))
