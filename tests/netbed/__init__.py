"""dptrain's multi-node test bed: network namespaces as nodes on one machine (see
docs/testbed.md). `NetBed` builds one; `skip_reason()` says why this machine cannot."""
from .bed import NetBed, NetBedError
from .probe import skip_reason

__all__ = ["NetBed", "NetBedError", "skip_reason"]
