"""Give freed memory back to the operating system (glibc), so a long run's RSS is its real working set.

glibc's ``malloc`` serves a request below its *mmap threshold* from the heap, and raises that
threshold (up to 32 MiB on 64-bit) each time a larger ``mmap``-ed block is freed. Torch on CPU
allocates and frees activation, gradient and logits tensors of a few MiB at every training and
generation step, so after the first step they all come from the heap; the heap grows to the
largest step's working set and keeps it, and the next phase (generation, evaluation) stacks its
own on top. :func:`pin_malloc` fixes the threshold (which also stops the dynamic raise), so blocks
above it are ``mmap``-ed and returned on ``free``; :func:`trim` hands the heap's free top back
after a phase. Measured on the default model (LoRA training step, micro-batch 4 of ~100 tokens):
RSS after a training phase 2168 -> 1293 MiB, see ``benchmarks/improve_default.py``.

Page faults: a pinned 1 MiB threshold makes every larger tensor a fresh ``mmap`` whose pages fault in
on first touch and go back on free. Generation allocates the same few sizes at every decode step
(logits, their float32 copy, prefill activations), so under the pin it pays page faults and system
time at every step (docs/performance.md has the measurement). :func:`generation_phase` therefore
lifts the threshold to 32 MiB while generating (above the largest recurring buffer: float32 logits
of 64 rows are 12 MiB), so those buffers are reused from the heap, then trims the heap and pins the
threshold again for the next training phase, whose peak is the run's.

All are no-ops (returning False) where the C library is not glibc. The setting is process-wide:
:func:`agentloop.improve.improve` applies it, a library user may call it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["generation_phase", "pin_malloc", "trim"]

GENERATION_MMAP_THRESHOLD = 32 << 20  # glibc's dynamic threshold stops there too (DEFAULT_MMAP_THRESHOLD_MAX)

M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc has both; musl and macOS do not
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


PINNED_MMAP_THRESHOLD = 1 << 20


def pin_malloc(mmap_threshold: int = PINNED_MMAP_THRESHOLD, trim_threshold: int = 16 << 20) -> bool:
    """Fix glibc's mmap threshold (blocks above it are returned to the OS on free) and trim threshold."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and \
        bool(libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def trim() -> bool:
    """Return the free memory at the top of glibc's heaps to the OS (``malloc_trim(0)``)."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@contextmanager
def generation_phase(mmap_threshold: int = GENERATION_MMAP_THRESHOLD) -> Iterator[bool]:
    """While inside, blocks up to ``mmap_threshold`` come from the heap (no page faults for the decode
    loop's recurring buffers); on leaving, the heap is trimmed and the pinned threshold restored.
    Yields whether the setting took effect (False off glibc)."""
    applied = pin_malloc(mmap_threshold, trim_threshold=2 * mmap_threshold)
    try:
        yield applied
    finally:
        if applied:
            trim()
            pin_malloc()
