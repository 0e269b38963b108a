"""The exception hierarchy of kvarn_cl, mirroring include/kvarn_cl/error.hpp.

Every C++ ``kvarn_cl::Error`` thrown by the library reaches Python as the class of the same name
below, with the library's message (which names the offending argument and its value) and its
status code. Each class also derives from the built-in exception a Python caller would expect
(``InvalidArgument`` is a ``ValueError``, ``OutOfMemory`` a ``MemoryError``, ...), so generic
handlers keep working.
"""

import enum


class Status(enum.IntEnum):
    """Status codes shared with the C API (``kvarn_cl_status``) and ``Error::status()``."""

    ok = 0
    invalid_argument = 1
    non_finite_input = 2
    corrupt_record = 3
    out_of_memory = 4
    device_error = 5
    kernel_build_error = 6
    unsupported = 7
    io_error = 8
    internal = 9


class Error(Exception):
    """Base class of every error raised by kvarn_cl (C++ ``kvarn_cl::Error``).

    ``status`` is the library's :class:`Status`; ``str(e)`` is its message."""

    status = Status.internal

    @property
    def message(self):
        return str(self.args[0]) if self.args else ""


class InvalidArgument(Error, ValueError):
    """Wrong preset, head dimension, dtype, shape, layout, size, index or sequence id."""

    status = Status.invalid_argument


class NonFiniteInput(Error, ValueError):
    """NaN or Inf in keys, values or queries (or a row that overflows fp16 once rotated)."""

    status = Status.non_finite_input


class CorruptRecord(Error, ValueError):
    """Records that are truncated or hold non-finite scales."""

    status = Status.corrupt_record


class OutOfMemory(Error, MemoryError):
    """A host or device allocation failed, or a pool (sequences, blocks) is exhausted."""

    status = Status.out_of_memory


class DeviceError(Error, RuntimeError):
    """An OpenCL call failed."""

    status = Status.device_error


class KernelBuildError(Error, RuntimeError):
    """An OpenCL program failed to build; ``build_log`` holds the compiler's output."""

    status = Status.kernel_build_error
    build_log = ""


class Unsupported(Error, RuntimeError):
    """A feature not available in this build or on this device (e.g. no OpenCL device)."""

    status = Status.unsupported


class IoError(Error, OSError):
    """A file could not be read or written."""

    status = Status.io_error


# C++ status -> class, used by the extension's exception translator.
BY_STATUS = {
    Status.invalid_argument: InvalidArgument,
    Status.non_finite_input: NonFiniteInput,
    Status.corrupt_record: CorruptRecord,
    Status.out_of_memory: OutOfMemory,
    Status.device_error: DeviceError,
    Status.kernel_build_error: KernelBuildError,
    Status.unsupported: Unsupported,
    Status.io_error: IoError,
}
