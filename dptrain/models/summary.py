"""Per-layer table of output shape, parameters, activation memory and forward FLOPs.

Modelled on the worked example of the course notes (seed 004): activation
memory counts each layer's output per image, times two for training (the
gradients of the activations are held too); parameter memory counts the
weights, their gradients and up to two optimiser slots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..nn.containers import leaves, trace


@dataclass
class Row:
    index: int
    layer: str
    output_shape: tuple
    params: int
    activation_bytes: int
    flops: int
    depth: int = 0             # how many residual blocks hold the layer


@dataclass
class Sum:
    """A residual block's sum: one more activation and one addition per element."""
    layers: tuple              # (first, last) leaf index inside the block
    shortcut: str              # "identity" or "projection"
    shortcut_from: int | None  # the projection's first leaf index
    output_shape: tuple
    activation_bytes: int
    flops: int
    depth: int


@dataclass
class Summary:
    name: str
    input_shape: tuple
    batch_size: int
    itemsize: int
    rows: list                 # one Row per leaf layer, in index order
    sums: list = field(default_factory=list)     # one Sum per residual block

    @classmethod
    def of(cls, model, input_shape, batch_size: int = 1) -> "Summary":
        itemsize = 4 if model.dtype.__name__ == "float32" else 8
        rows, sums = [], []

        def visit(layer, shape, depth):
            out = tuple(layer.output_shape(shape))
            n_params = sum(int(v.size) for v in layer.params.values())
            rows.append(Row(layer.index, repr(layer), out, n_params, math.prod(out) * itemsize,
                            layer.flops(shape), depth))
            return out

        def merged(block, shape, depth):
            ids = [leaf.index for leaf in block.leaves()]
            first = None if block.shortcut is None else next(leaves(block.shortcut)).index
            sums.append(Sum((min(ids), max(ids)), "identity" if first is None else "projection",
                            first, shape, math.prod(shape) * itemsize, math.prod(shape), depth))
        trace(model.structure, tuple(input_shape), visit, merged)
        return cls(model.name, tuple(input_shape), batch_size, itemsize, rows, sums)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        """Per image, forward outputs of every layer and residual sum (input included)."""
        return (math.prod(self.input_shape) * self.itemsize
                + sum(r.activation_bytes for r in self.rows + self.sums))

    @property
    def forward_flops(self) -> int:
        return sum(r.flops for r in self.rows + self.sums)

    @property
    def training_flops(self) -> int:
        """Per image: forward + backward, backward counted as twice the forward."""
        return 3 * self.forward_flops

    def training_memory_bytes(self, batch_size: int | None = None) -> int:
        b = batch_size or self.batch_size
        return 2 * self.activation_bytes * b + 4 * self.total_params * self.itemsize

    def as_dict(self) -> dict:
        return {
            "model": self.name, "input_shape": list(self.input_shape),
            "layers": [{"index": r.index, "layer": r.layer, "output_shape": list(r.output_shape),
                        "params": r.params, "activation_bytes": r.activation_bytes,
                        "forward_flops": r.flops, "depth": r.depth} for r in self.rows],
            "residual_sums": [{"layers": list(b.layers), "shortcut": b.shortcut,
                               "shortcut_from": b.shortcut_from,
                               "output_shape": list(b.output_shape), "depth": b.depth,
                               "activation_bytes": b.activation_bytes, "forward_flops": b.flops}
                              for b in self.sums],
            "total_params": self.total_params, "activation_bytes_per_image": self.activation_bytes,
            "forward_flops_per_image": self.forward_flops,
            "training_flops_per_image": self.training_flops,
            "training_memory_bytes": self.training_memory_bytes(), "batch_size": self.batch_size,
        }

    def _body_lines(self) -> list[str]:
        """A row per layer, indented two spaces per enclosing residual block; each block opens
        with a "residual" line, its shortcut with a "shortcut" line, and ends with its sum."""
        def line(index, label, depth, shape, params, act, flops):
            label = ("  " * depth + label)[:38]
            return (f"{index:>3}  {label:<38} {str(shape):<14} {params:>10,} {act:>11,} "
                    f"{flops:>13,}")

        def note(depth, text):
            return f"{'':>3}  {'  ' * depth}{text}"
        opens = {}                          # first leaf index -> blocks opening there
        shortcut_at = {}                    # first shortcut leaf index -> its block
        closes = {}                         # last leaf index -> sums closing there
        for b in self.sums:
            opens.setdefault(b.layers[0], []).append(b)
            closes.setdefault(b.layers[1], []).append(b)
        for b in self.sums:
            if b.shortcut_from is not None:
                shortcut_at[b.shortcut_from] = b
        lines = []
        for r in self.rows:
            # a shortcut's line before the blocks that open inside that shortcut
            heads = [(b.depth, 0, f"residual (layers {b.layers[0]}-{b.layers[1]}): branch + "
                                  f"{b.shortcut} shortcut") for b in opens.get(r.index, [])]
            if r.index in shortcut_at:
                heads.append((shortcut_at[r.index].depth, 1, "shortcut:"))
            for depth, kind, text in sorted(heads):
                lines.append(note(depth + kind, text))
            lines.append(line(r.index, r.layer, r.depth, r.output_shape, r.params,
                              r.activation_bytes, r.flops))
            for b in sorted(closes.get(r.index, []), key=lambda b: -b.depth):
                lines.append(line("", "+ sum", b.depth, b.output_shape, 0, b.activation_bytes,
                                  b.flops))
        return lines

    def __str__(self) -> str:
        head = f"{'#':>3}  {'layer':<38} {'output':<14} {'params':>10} {'act. bytes':>11} {'fwd FLOPs':>13}"
        lines = [f"model {self.name}, input {self.input_shape}, per image", head, "-" * len(head)]
        lines.append(f"{'':>3}  {'input':<38} {str(self.input_shape):<14} {0:>10,} "
                     f"{math.prod(self.input_shape) * self.itemsize:>11,} {0:>13,}")
        lines += self._body_lines()
        lines.append("-" * len(head))
        lines.append(f"total parameters        {self.total_params:,} "
                     f"({self.total_params * self.itemsize / 2**20:.2f} MiB)")
        lines.append(f"activations per image   {self.activation_bytes:,} bytes "
                     f"(x2 for training: {2 * self.activation_bytes / 2**20:.2f} MiB)")
        lines.append(f"forward FLOPs per image {self.forward_flops:,} "
                     f"(training step ~3x: {self.training_flops / 1e6:.1f} MFLOP)")
        lines.append(f"training memory at batch {self.batch_size}: "
                     f"{self.training_memory_bytes() / 2**20:.1f} MiB "
                     "(activations x2, params + grads + 2 optimiser slots)")
        return "\n".join(lines)
