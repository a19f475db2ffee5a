"""How this run's ranks talk, agreed by all of them after the start-up checks.

Every rank describes its device and libraries (comm/choice.py); the descriptions are
gathered and every rank decides from the same list, so the transport, the depth of the
step-metrics pipeline and any refusal are the same on every rank. The chosen communicator
is then wrapped for --check-collectives (comm/order_check.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import backend, comm as comms, phase_watch
from ..comm import hierarchical, order_check
from ..comm.mpi import MPICommunicator
from ..errors import UsageError


@dataclass
class Agreement:
    comm: object               # the communicator gradients travel over (maybe order-checked)
    transport: str             # mpi, nccl, cuda-mpi or staged
    why: str                   # why that transport (printed on GPUs)
    device_reads: bool         # some rank reads its results from a device, a step late
    checks_every: int          # --check-collectives N (0: none, or strict)
    layout: object = None      # which ranks share a node (comm/topology.Layout), over MPI

    def metrics_pipeline(self, skip_nonfinite: int, size: int) -> str:
        """Synchronous where --skip-nonfinite must decide before the next updates, or where
        there is nothing to defer (one process on the CPU); else one step late (host values)
        or two (device values, copied behind the step's kernels)."""
        if skip_nonfinite > 0 or (size == 1 and not self.device_reads):
            return "synchronous"
        return "device" if self.device_reads else "host"


def agree(comm, cfg) -> Agreement:
    mine = comms.choice.local_caps(backend.device_name, backend.device_identity())
    with phase_watch.start_up("the transport agreement"):
        caps = [c for _, c in sorted(comm.allreduce_obj([(comm.rank, mine)]))]
    try:
        transport, why = comms.choose(cfg.comm, caps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if comm.size > 1 and transport != "mpi":          # gradients in device memory
        comm = comms.wrap(transport, order_check.unchecked(comm))
    mode = order_check.mode_from_env() if cfg.check_collectives is None \
        else order_check.parse_mode(cfg.check_collectives)
    layout = None
    over_mpi = isinstance(order_check.unchecked(comm), MPICommunicator)   # not --net-emulate's
    if comm.size > 1 and transport == "mpi" and over_mpi:
        channels: list = []                # one registry: the end-of-run check covers them all
        comm, layout = hierarchical.over(order_check.unchecked(comm), cfg.reduction,
                                         lambda c: order_check.checked(c, mode, channels))
        comm = order_check.checked(comm, mode, channels)
    elif comm.size > 1:
        comm = order_check.checked(comm, mode)
    return Agreement(comm, transport, why, any(c.device_reads for c in caps),
                     mode if isinstance(mode, int) else 0, layout)
