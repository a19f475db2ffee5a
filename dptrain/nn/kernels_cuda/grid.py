"""How a per-channel reduction kernel is laid out on the device: a leaf that the kernel
sources (norm.py, fused.py) use and compile.py's launchers share, so that the sources need
nothing from compile.py (which assembles them into one module)."""
from __future__ import annotations

MAX_BLOCK = 256                     # threads a block at most (the sources' MAX_BLOCK)


def reduction_grid(launch, channels: int, per_channel: int, chunks=None):
    """(chunks per channel, threads per block) for a per-channel reduction: enough blocks to
    fill the device, but at least 8 elements per thread in a chunk."""
    block = getattr(launch, "reduce_block", MAX_BLOCK)
    assert block & (block - 1) == 0 and 0 < block <= MAX_BLOCK, block
    if chunks is None:
        target = getattr(launch, "reduce_blocks", 1024)
        chunks = min(max(1, per_channel // (8 * block)), max(1, -(-target // channels)))
    return int(chunks), int(block)
