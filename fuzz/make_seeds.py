#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (committed; rerun only to change them).

usage: fuzz/make_seeds.py KVARN_CL   (path of a built kvarn-cl, used for valid records)
Standard library only. Seeds are small on purpose: libFuzzer mutates them, CI runs each target
for a bounded time from these seeds.
"""
import os, random, struct, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(1)


def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def f16(values):
    return b"".join(struct.pack("<e", v) for v in values)


def records(kvarn_cl, preset, d, tiles, g):
    with tempfile.TemporaryDirectory() as t:
        vals = [rng.gauss(0, 1) for _ in range(tiles * g * d)]
        for name in ("k", "v"):
            with open(os.path.join(t, name), "wb") as f:
                f.write(f16(vals))
        subprocess.run([kvarn_cl, "quantize", "--preset", preset, "--head-dim", str(d), "--backend", "cpu",
                        "--k", os.path.join(t, "k"), "--v", os.path.join(t, "v"), "--out", os.path.join(t, "r")],
                       check=True, stdout=subprocess.DEVNULL)
        return open(os.path.join(t, "r"), "rb").read()


def gguf(kvs, tensors, data=b""):
    def s(x):
        return struct.pack("<Q", len(x)) + x.encode()
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, kind, val in kvs:
        out += s(key) + struct.pack("<I", kind)
        out += {4: lambda v: struct.pack("<I", v), 6: lambda v: struct.pack("<f", v), 8: s}[kind](val)
    for name, dims, typ, off in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", x) for x in dims)
        out += struct.pack("<IQ", typ, off)
    out += b"\0" * (-len(out) % 32)
    return out + data


def fnv1a(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) % 2**64
    return h


def cache_entry(key, binary):
    """A program-cache entry (src/opencl/program_binary_cache.cpp, format 2)."""
    k = key.encode()
    return (b"KVCLBIN2" + struct.pack("<QQ", fnv1a(k), len(k)) + k + struct.pack("<Q", len(binary)) + binary
            + struct.pack("<Q", fnv1a(binary)))


def text_seeds():
    """Seeds of the targets that need no kvarn-cl: program_cache_entry, layer_presets."""
    # program_cache_entry: a key-length byte, the key, then the entry bytes.
    for name, key, entry in [
            ("valid", "k", cache_entry("k", bytes(range(16)))),
            ("valid_long_key", "NVIDIA|3.0|H100", cache_entry("NVIDIA|3.0|H100", b"\x7fELF" + bytes(40))),
            ("other_key", "k", cache_entry("q", b"binary")),
            ("wrapped_length", "k", cache_entry("k", b"x")[:8 + 16 + 1] + struct.pack("<Q", 2**64 - 8) + b"abcde")]:
        put("program_cache_entry", name, bytes([len(key)]) + key.encode() + entry)
    # layer_presets: layer-preset file text.
    put("layer_presets", "calibrated", b"# kvarn_cl layer presets: <layer> <preset>\n# b64\n0 k4v4_g128\n1 k4v2_g128\n2 k2v2_g128\n")
    put("layer_presets", "bad_numbers", b"+0 k4v2_g128\n00 k4v4_g128\n")
    put("layer_presets", "escapes", b"0 \x1b[31mk4v2_g128\x07\n1 k4v2_g64 extra\n")
    put("layer_presets", "mixed_g", b"0 k4v2_g64\r\n1 k4v4_g64 # recent\n\n")


def main():
    kvarn_cl = sys.argv[1]
    # record_decoder: selector byte (preset = b % 5, head_dim = (64,128,256)[(b/8) % 3], frame bit 7).
    put("record_decoder", "k4v2_g128_d128", bytes([8]) + records(kvarn_cl, "k4v2_g128", 128, 1, 128))
    put("record_decoder", "k4v4_g64_d64_original", bytes([0x80 | 4]) + records(kvarn_cl, "k4v4_g64", 64, 2, 64))
    put("record_decoder", "k2v2_g128_d256", bytes([2 | 16]) + records(kvarn_cl, "k2v2_g128", 256, 1, 128))
    put("record_decoder", "zeros", bytes([3]) + bytes(7296))
    # cli_readers: selector byte (width, tile multiple), then fp16 file bytes.
    put("cli_readers", "d64_g64", bytes([0 + 6 * 1]) + f16([rng.gauss(0, 1) for _ in range(64 * 64)]))
    put("cli_readers", "d128_one_row", bytes([1]) + f16([1.0] * 128))
    put("cli_readers", "nan", bytes([0]) + f16([0.5] * 63 + [float("nan")]))
    put("cli_readers", "odd", bytes([1]) + b"\x00\x3c\x00")
    # gguf: a small llama header with tensors, and the crafted cases of test/tools.
    head = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 1),
            ("llama.embedding_length", 4, 64), ("llama.attention.head_count", 4, 1),
            ("llama.attention.head_count_kv", 4, 1), ("llama.feed_forward_length", 4, 128),
            ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5)]
    put("gguf", "llama_header", gguf(head, [("token_embd.weight", [64, 4], 0, 0),
                                            ("output_norm.weight", [64], 1, 1024)], bytes(1024 + 128)))
    put("gguf", "alignment0", gguf(head + [("general.alignment", 4, 0)], []))
    put("gguf", "offset_wraps", gguf(head, [("token_embd.weight", [16], 0, 2**64 - 4096)], bytes(64)))
    put("gguf", "heads0", gguf([kv if kv[0] != "llama.attention.head_count" else (kv[0], 4, 0) for kv in head], []))
    put("gguf", "q8_0", gguf(head, [("token_embd.weight", [32, 2], 8, 0)], bytes(68)))
    # capi: control bytes.
    for i in range(4):
        put("capi", "random%d" % i, bytes(rng.randrange(256) for _ in range(64 + 64 * i)))
    put("capi", "valid_codec", bytes([1, 1, 1, 2, 1, 9]) + bytes(200))
    text_seeds()


if __name__ == "__main__":
    main()
