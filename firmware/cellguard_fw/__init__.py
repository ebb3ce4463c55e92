"""cellguard firmware: runs unchanged under MicroPython (on a board or the
WebAssembly port) and under CPython (the fast simulator runtime)."""

FIRMWARE_VERSION = "0.1.0"

try:
    import micropython  # noqa: F401  (present on every MicroPython port)
except ImportError:  # CPython: provide const() and friends
    from . import _cpython_compat  # noqa: F401
