"""Seed 000 Algorithm 3 (Lee et al.): fully connected layers without a weight-gradient Allreduce.

For a chosen Dense layer with input X (B x n_in) and output error dY (B x n_out) over the
global batch, dW = X^T dY and db = sum(dY). Instead of all-reducing n_in x n_out values,
the ranks all-gather X (posted right after the layer's forward) and dY (posted right after
its backward), B x (n_in + n_out) values, and every rank computes the full dW and db
itself, deferred to the next forward pass just before the layer runs. Worth it when
global_batch x (n_in + n_out) < n_in x n_out (``--fc-replicate auto``).

Each rank's rows are zero-padded to ceil(B / P), so every gather has equal pieces; zero
rows add nothing to X^T dY or to sum(dY). dY already carries the 1 / (global batch)
normalisation of the loss, so the result is the global-batch mean gradient, as blocking's.
"""
from __future__ import annotations

import time
from contextlib import nullcontext

from ..backend import get_array_module
from ..comm.order_check import labelled
from ..nn import Dense
from .protocol import ProtocolError

MODES = ("auto", "all", "none")


def choose_layers(model, mode: str, global_batch: int) -> list[int]:
    if mode not in MODES:
        raise ValueError(f"unknown --fc-replicate {mode!r} (choose {', '.join(MODES)})")
    if mode == "none":
        return []
    chosen = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Dense):
            if mode == "all" or global_batch * (layer.n_in + layer.n_out) < layer.n_in * layer.n_out:
                chosen.append(i)
    return chosen


class _Gather:
    """One layer's two gathers: padded send buffers and (P, rows, n) receive buffers."""

    def __init__(self, xp, dtype, size, rows, n_in, n_out):
        self.x_send = xp.zeros((rows, n_in), dtype=dtype)
        self.x_recv = xp.zeros((size, rows, n_in), dtype=dtype)
        self.dy_send = xp.zeros((rows, n_out), dtype=dtype)
        self.dy_recv = xp.zeros((size, rows, n_out), dtype=dtype)
        self.x_handle = self.dy_handle = None
        self.posted_at = 0.0


class FCReplication:
    def __init__(self, model, comm, engine, layers: list[int], global_batch: int, stats,
                 watchdog=None):
        """``watchdog``: bounds the wait for the gathers (a dead rank would leave it for ever)."""
        self.model, self.comm, self.engine, self.stats = model, comm, engine, stats
        self.watchdog = watchdog
        self.layers = list(layers)
        self.rows = -(-global_batch // comm.size)
        self._gathers = {}
        for i in self.layers:
            layer = model.layers[i]
            layer.compute_param_grads = False          # its dW comes from the gathered data
            w = layer.params["W"]
            self._gathers[i] = _Gather(get_array_module(w), w.dtype, comm.size, self.rows,
                                       layer.n_in, layer.n_out)

    def __contains__(self, i) -> bool:
        return i in self._gathers

    def _post(self, send, recv, local, priority: int, what: str):
        n = len(local)
        if n > self.rows:
            raise ValueError(f"a local batch of {n} exceeds the {self.rows} rows sized for FC "
                             "replication (global batch larger than announced)")
        send[:n] = local
        send[n:] = 0
        self.stats.bytes += int(send.nbytes) * (self.comm.size - 1)     # ring allgather, sent
        with labelled(what):
            return self.engine.submit_gather(send, recv, priority=priority)

    def after_forward(self, i: int) -> None:
        g = self._gathers.get(i)
        if g is not None:
            g.posted_at = time.perf_counter()
            g.x_handle = self._post(g.x_send, g.x_recv, self.model.layers[i]._x, i,
                                   f"allgather of layer {i}'s inputs")

    def after_backward(self, i: int) -> None:
        g = self._gathers[i]
        g.dy_handle = self._post(g.dy_send, g.dy_recv, self.model.layers[i]._dy, i,
                                f"allgather of layer {i}'s output errors")

    def post_empty(self, i: int, which: str) -> None:
        """A rank without samples still takes part: zero rows."""
        layer = self.model.layers[i]
        xp = get_array_module(layer.params["W"])
        if which == "x":
            layer._x = xp.zeros((0, layer.n_in), dtype=layer.params["W"].dtype)
            self.after_forward(i)
        else:
            layer._dy = xp.zeros((0, layer.n_out), dtype=layer.params["W"].dtype)
            self.after_backward(i)

    def complete(self, i: int) -> float:
        """Wait for layer i's gathers and write its full gradients; returns seconds waited."""
        g = self._gathers[i]
        if g.x_handle is None:                     # already completed (settled at step end)
            return 0.0
        if g.dy_handle is None:
            raise ProtocolError(f"layer {i}'s output errors were never gathered, yet its "
                                "update is due: its backward never reported its gradients "
                                "final (did a backward above it return None?)")
        t0 = time.perf_counter()
        with (nullcontext() if self.watchdog is None else self.watchdog.guard(
                f"allgathers of layer {i}'s inputs and output errors", "step")):
            g.x_handle.wait()
            g.dy_handle.wait()
        waited = time.perf_counter() - t0
        self.stats.comm_s += max(g.x_handle.done_at or t0, g.dy_handle.done_at or t0) - g.posted_at
        g.x_handle = g.dy_handle = None
        layer = self.model.layers[i]
        xp = get_array_module(g.x_recv)
        x = g.x_recv.reshape(-1, layer.n_in)
        dy = g.dy_recv.reshape(-1, layer.n_out)
        xp.matmul(x.T, dy, out=layer.grads["W"])
        if layer.bias:
            dy.sum(axis=0, out=layer.grads["b"])
        layer._add_regularization_grad()
        return waited

    def pending(self) -> bool:
        return any(g.x_handle is not None or g.dy_handle is not None for g in self._gathers.values())
