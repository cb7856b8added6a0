"""pin_malloc / trim: freed tensors of a few MiB go back to the OS (glibc), so RSS follows the working set."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

PROGRAM = textwrap.dedent("""
    import sys, torch
    from agentloop.training.memory import pin_malloc, trim
    def rss_mib():
        return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
    pinned = pin_malloc() if "pin" in sys.argv[1] else False
    big = torch.ones(8 << 18)  # 8 MiB freed: glibc's dynamic threshold would rise to 8 MiB
    del big
    base = rss_mib()
    keep = []
    blocks = [torch.ones(1 << 19) for _ in range(200)]  # 200 x 2 MiB, touched
    for i, b in enumerate(blocks):
        if i % 50 == 49:
            keep.append(torch.ones(16))  # small live objects between the big ones (fragments the heap)
    held = rss_mib() - base
    del blocks
    if "trim" in sys.argv[1]:
        trim()
    print(pinned, round(held), round(rss_mib() - base))
""")


def _run(mode: str) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True).stdout
    pinned, held, left = out.split()
    return pinned, int(held), int(left)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_pinned_malloc_returns_freed_blocks_to_the_os() -> None:
    pinned, held, left = _run("pin")
    if pinned != "True":
        pytest.skip("the C library is not glibc: pin_malloc is a no-op here")
    assert held >= 350, held  # the blocks really were resident
    assert left <= 50, (held, left)  # and are gone at free, with no trim (unpinned they stay: 'none' mode)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_trim_returns_the_heaps_free_pages() -> None:
    _, held, left = _run("trim")
    assert held >= 350 and left <= 50, (held, left)


def test_both_are_safe_to_call_anywhere() -> None:
    from agentloop.training.memory import pin_malloc, trim

    assert isinstance(trim(), bool)
    assert isinstance(pin_malloc(), bool)
