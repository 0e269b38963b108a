"""kvarn_cl: KVarN KV-cache quantization (libkvarn_cl) over numpy arrays.

Keys are stored in 4 bits and values in 2 or 4, per tile of G tokens of one KV head, after a
Hadamard rotation and a log-domain variance normalization; decode attention reads the records
directly. The package binds the library's C++ API:

- :func:`devices`, :func:`presets`, :func:`version`, :func:`record_bytes` and :class:`Backend`;
- :func:`quantize` / :func:`dequantize`: the tile codec, byte-compatible with ``kvarn-cl``;
- :class:`KVCache`: the paged cache (append, commit/rollback, attend, memory_report), and
  :class:`DecodeStep` (``KVCache.begin_step``): an engine's decode step, every layer.

Arrays (numpy, or anything with the buffer protocol or DLPack on the CPU) are used in place, never
copied; a dtype or layout that would need a copy is an error naming the argument. Errors are the
:class:`Error` hierarchy of the C++ library. See docs/PYTHON.md.
"""

from ._errors import (
    CorruptRecord,
    DeviceError,
    Error,
    InvalidArgument,
    IoError,
    KernelBuildError,
    NonFiniteInput,
    OutOfMemory,
    Status,
    Unsupported,
)
from ._kvarn_cl import (
    Backend,
    DecodeStep,
    KVCache,
    LayerPlan,
    budget_from_total_bytes,
    choose_layer_presets,
    dequantize,
    devices,
    measure_layer_sensitivity,
    preset_bytes_per_token_head,
    presets,
    quantize,
    read_layer_presets,
    record_bytes,
    version,
    with_opencl,
)

__version__ = version()

__all__ = [
    "Backend",
    "CorruptRecord",
    "DecodeStep",
    "DeviceError",
    "Error",
    "InvalidArgument",
    "IoError",
    "KVCache",
    "KernelBuildError",
    "LayerPlan",
    "NonFiniteInput",
    "OutOfMemory",
    "Status",
    "Unsupported",
    "budget_from_total_bytes",
    "choose_layer_presets",
    "dequantize",
    "devices",
    "measure_layer_sensitivity",
    "preset_bytes_per_token_head",
    "presets",
    "quantize",
    "read_layer_presets",
    "record_bytes",
    "version",
    "with_opencl",
]
