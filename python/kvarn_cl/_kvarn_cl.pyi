"""Type stubs of the extension kvarn_cl._kvarn_cl (python/src/*.cpp). Shapes use T tokens,
D head_dim, Hk KV heads, Hq query heads, B sequences, G tokens per tile."""

from typing import Any, Dict, List, Literal, Optional, Protocol, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

from ._errors import Error as Error

PresetName = Literal["k4v2_g128", "k4v4_g128", "k2v2_g128", "k4v2_g64", "k4v4_g64"]
BackendKind = Literal["auto", "cpu", "opencl"]

class _DLPack(Protocol):
    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...

# numpy arrays, anything with the buffer protocol, or a DLPack producer on the CPU; C-contiguous.
ArrayLike = Union[np.ndarray, memoryview, bytes, bytearray, _DLPack]
BackendLike = Union["Backend", BackendKind, None]
SeqIds = Union[int, Sequence[int]]
DTypeLike = Union[None, str, type, np.dtype]

with_opencl: bool

class PresetInfo(TypedDict):
    name: str
    k_bits: int
    v_bits: int
    group: int
    experimental: bool
    default: bool
    record_bytes: Dict[int, int]

class DeviceInfo(TypedDict):
    platform_index: int
    device_index: int
    platform: str
    platform_version: str
    name: str
    vendor: str
    version: str
    driver_version: str
    opencl_c_version: str
    type: str
    fp16: bool
    fp64: bool
    subgroups: bool
    denormals: bool
    local_mem_bytes: int
    max_work_group_size: int
    compute_units: int
    global_mem_bytes: int
    max_alloc_bytes: int
    max_clock_mhz: int

class MemoryReport(TypedDict):
    records: int
    sink: int
    tail: int
    block_tables: int
    seq_info: int
    workspaces: int
    total: int
    records_in_use: int
    exact_recent_tokens: int
    live_tokens: int
    fp16_equivalent: int
    free_blocks: int

class Snapshot(TypedDict):
    records: npt.NDArray[np.uint8]  # [tiles][Hk][record_bytes]
    sink_k: npt.NDArray[np.float16]  # [Hk][sink_len][D], rotated frame
    sink_v: npt.NDArray[np.float16]
    tail_k: npt.NDArray[np.float16]  # [Hk][tail_len][D], rotated frame
    tail_v: npt.NDArray[np.float16]

def version() -> str:
    """The library's version, 'MAJOR.MINOR.PATCH'."""

def presets() -> List[PresetInfo]:
    """Every preset with its bits, tile size G and record bytes at head_dim 64, 128, 256."""

def record_bytes(preset: PresetName = "k4v2_g128", head_dim: int = 128) -> int:
    """Bytes of one record (one tile of one KV head)."""

def read_layer_presets(path: str) -> List[str]:
    """The presets of a layer-preset file (`kvarn-eval --calibrate`), one per layer."""

def devices() -> List[DeviceInfo]:
    """Every OpenCL device of every platform (empty without OpenCL)."""

class Backend:
    """Where the codec and the cache run: 'cpu', 'opencl' or 'auto' (OpenCL, else the CPU)."""

    def __init__(self, kind: BackendKind = "auto", *, platform: Union[int, str, None] = None,
                 device: Union[int, str, None] = None, threads: int = 0) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["cpu", "opencl"]: ...
    @property
    def requested(self) -> BackendKind: ...
    @property
    def is_opencl(self) -> bool: ...
    @property
    def fallback_reason(self) -> Optional[str]: ...
    @property
    def reason(self) -> Optional[str]: ...

def quantize(k: ArrayLike, v: ArrayLike, *, preset: PresetName = "k4v2_g128",
             backend: BackendLike = None, sinkhorn_iters: int = 8,
             out: Optional[np.ndarray] = None) -> npt.NDArray[np.uint8]:
    """k, v float16/float32 [..., T, D] (original frame, T a multiple of G) -> uint8
    [..., T/G, record_bytes]."""

def dequantize(records: ArrayLike, *, preset: PresetName = "k4v2_g128",
               head_dim: Optional[int] = None, rotated: bool = False,
               backend: BackendLike = None,
               dtype: DTypeLike = None) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 [..., tiles, record_bytes] (or bytes with head_dim) -> k, v [..., tiles*G, D],
    float16 (default) or float32."""

class KVCache:
    """A paged KVarN KV cache for many sequences (sink and tail fp16, complete tiles as records)."""

    def __init__(self, preset: PresetName = "k4v2_g128", layers: int = 1, kv_heads: int = 1,
                 head_dim: int = 128, max_tokens: int = 4096, backend: BackendLike = None, *,
                 max_sequences: int = 1, pool_blocks: int = 0, sink_tokens: Optional[int] = None,
                 max_uncommitted: int = 64, sinkhorn_iters: int = 8,
                 layer_presets: Union[None, str, Sequence[PresetName]] = None,
                 recent_tokens: int = 128) -> None: ...
    def add_sequence(self) -> int: ...
    def free(self, seq: int) -> None: ...
    def append(self, seq: SeqIds, layer: int, k: ArrayLike, v: ArrayLike, *,
               tokens: Optional[Sequence[int]] = None, speculative: bool = False) -> None:
        """seq an id: k, v [T][Hk][D]; a list of B ids: [B][T][Hk][D], or [sum(tokens)][Hk][D]
        with tokens=. float16 or float32, original frame."""
    def commit(self, seq: SeqIds, tokens: Union[int, Sequence[int], None] = None) -> None: ...
    def rollback(self, seq: int) -> None: ...
    def attend(self, layer: int, q: ArrayLike, *, seqs: SeqIds, scale: Optional[float] = None,
               path: Literal["fused", "materialize"] = "fused", out: Optional[np.ndarray] = None,
               dtype: DTypeLike = None) -> np.ndarray:
        """q float32 (or float16) [B][Hq][D] -> [B][Hq][D] float32 (or float16), original frame."""
    def memory_report(self) -> MemoryReport: ...
    def begin_step(self, seqs: Sequence[int]) -> "DecodeStep":
        """One new token of every listed sequence through every layer; finish() synchronizes."""
    def materialize(self, seq: int, layer: int = 0, *,
                    rotated: bool = False) -> Tuple[npt.NDArray[np.float16], npt.NDArray[np.float16]]:
        """K, V float16 [Hk][tokens][D] as the cache holds them, decoded."""
    def snapshot(self, seq: int, layer: int = 0) -> Snapshot: ...
    def length(self, seq: int, layer: int = 0) -> int: ...
    def committed(self, seq: int, layer: int = 0) -> int: ...
    def quantized_tiles(self, seq: int, layer: int = 0) -> int: ...
    def __contains__(self, seq: object) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def preset(self) -> str: ...
    @property
    def layer_presets(self) -> List[str]: ...
    @property
    def layer_record_bytes(self) -> List[int]: ...
    @property
    def recent_tokens(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def group(self) -> int: ...
    @property
    def sinkhorn_iters(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def kv_heads(self) -> int: ...
    @property
    def max_sequences(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def max_uncommitted(self) -> int: ...
    @property
    def sink_tokens(self) -> int: ...
    @property
    def tail_capacity(self) -> int: ...
    @property
    def record_bytes(self) -> int: ...
    @property
    def backend(self) -> Backend: ...

def _addresses() -> Dict[str, int]:
    """Testing hook: data address of each array argument as the C++ code used it."""


class DecodeStep:
    """One token of a batch through every layer (KVCache.begin_step); a context manager."""

    @property
    def sequences(self) -> List[int]: ...
    def append(self, layer: int, k: ArrayLike, v: ArrayLike) -> None:
        """k, v float16 or float32 [B][Hk][D], original frame; each layer once per step."""
    def attend(self, layer: int, q: ArrayLike, *, scale: Optional[float] = None,
               out: Optional[np.ndarray] = None, dtype: DTypeLike = None) -> np.ndarray:
        """q [B][Hq][D] -> [B][Hq][D] float32 (or float16), after the layer's append."""
    def finish(self) -> None: ...
    def abandon(self) -> None: ...
    def __enter__(self) -> "DecodeStep": ...
    def __exit__(self, *exc: object) -> bool: ...

# --- per-layer preset plans (python/src/layer_plan.cpp; C++ include/kvarn_cl/layer_plan.hpp) ---
class LayerPlan:
    """One preset per layer under a budget of bytes per token per KV head (steady state, mean over
    layers). `presets` goes to KVCache(layer_presets=...)."""
    @property
    def presets(self) -> List[str]: ...
    @property
    def budget(self) -> float: ...
    @property
    def bytes_per_token_head(self) -> float: ...
    @property
    def predicted_error(self) -> float: ...
    def to_file_text(self, comment: str = "") -> str: ...

def choose_layer_presets(error: Union[Sequence[Sequence[float]], npt.NDArray[np.float64]],
                         presets: Sequence[PresetName], head_dim: int, budget: float) -> LayerPlan:
    """error[layer][i]: the layer's sensitivity at presets[i]; InvalidArgument for a budget below
    the cheapest plan."""
def measure_layer_sensitivity(k: ArrayLike, v: ArrayLike, presets: Sequence[PresetName], *,
                              sinkhorn_iters: int = 8) -> npt.NDArray[np.float64]:
    """k, v float32 [L][T][Hk][D] (original frame) -> [L][len(presets)] relative squared error."""
def preset_bytes_per_token_head(preset: PresetName, head_dim: int) -> float: ...
def budget_from_total_bytes(total_bytes: int, tokens: int, kv_heads: int, layers: int) -> float: ...
