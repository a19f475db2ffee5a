"""Per-layer table of output shape, parameters, activation memory and forward FLOPs.

Modelled on the worked example of the course notes (seed 004): activation
memory counts each layer's output per image, times two for training (the
gradients of the activations are held too); parameter memory counts the
weights, their gradients and up to two optimiser slots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Row:
    index: int
    layer: str
    output_shape: tuple
    params: int
    activation_bytes: int
    flops: int


@dataclass
class Summary:
    name: str
    input_shape: tuple
    batch_size: int
    itemsize: int
    rows: list

    @classmethod
    def of(cls, model, input_shape, batch_size: int = 1) -> "Summary":
        itemsize = 4 if model.dtype.__name__ == "float32" else 8
        rows, shape = [], tuple(input_shape)
        for i, layer in enumerate(model.layers):
            flops = layer.flops(shape)
            shape = layer.output_shape(shape)
            n_params = sum(int(v.size) for v in layer.params.values())
            rows.append(Row(i, repr(layer), shape, n_params, math.prod(shape) * itemsize, flops))
        return cls(model.name, tuple(input_shape), batch_size, itemsize, rows)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        """Per image, forward outputs of every layer (input included)."""
        return math.prod(self.input_shape) * self.itemsize + sum(r.activation_bytes for r in self.rows)

    @property
    def forward_flops(self) -> int:
        return sum(r.flops for r in self.rows)

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
                        "forward_flops": r.flops} for r in self.rows],
            "total_params": self.total_params, "activation_bytes_per_image": self.activation_bytes,
            "forward_flops_per_image": self.forward_flops,
            "training_flops_per_image": self.training_flops,
            "training_memory_bytes": self.training_memory_bytes(), "batch_size": self.batch_size,
        }

    def __str__(self) -> str:
        head = f"{'#':>3}  {'layer':<38} {'output':<14} {'params':>10} {'act. bytes':>11} {'fwd FLOPs':>13}"
        lines = [f"model {self.name}, input {self.input_shape}, per image", head, "-" * len(head)]
        lines.append(f"{'':>3}  {'input':<38} {str(self.input_shape):<14} {0:>10,} "
                     f"{math.prod(self.input_shape) * self.itemsize:>11,} {0:>13,}")
        for r in self.rows:
            lines.append(f"{r.index:>3}  {r.layer:<38} {str(r.output_shape):<14} {r.params:>10,} "
                         f"{r.activation_bytes:>11,} {r.flops:>13,}")
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
