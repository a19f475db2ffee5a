"""Starting and ending MPI so that a watchdog thread can still act while a rank waits.

MPI_Init waits for every rank of the job and MPI_Finalize may wait for them too. mpi4py
calls MPI_Init inside the import of mpi4py.MPI, holding the interpreter lock, so no Python
thread (the start-up watchdog, the signal watcher) could run while a peer that never arrives
is awaited. Here mpi4py is imported without initialising MPI, and MPI_Init_thread and
MPI_Finalize are called through ctypes, which releases the lock for the call.

A rank that must end the job before MPI is up (an interrupt during its imports) joins MPI
first, so that MPI_Abort ends every rank with its code: a rank that merely exits before
MPI_Init leaves the others waiting in theirs (MPICH's mpiexec does not end them).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

JOIN_TIMEOUT_S = 30.0      # the others are importing too; a peer that never comes is stuck
_initializing = threading.Event()
_initialized = threading.Event()       # the main thread's MPI_Init returned
_finalizing = threading.Event()        # MPI_Abort cannot be called then


def _library(MPI):
    try:
        return ctypes.CDLL(MPI.__file__)      # its symbols include the MPI library it links
    except OSError:
        return None


def initialize():
    """mpi4py.MPI with MPI initialised (MPI_THREAD_MULTIPLE: the overlap schedule's thread and
    the watchdogs call MPI beside the main thread), the interpreter lock released meanwhile."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None:
        import mpi4py
        mpi4py.rc.thread_level = "multiple"
        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = True                 # at exit, unless finalize() ran first
        from mpi4py import MPI
    if MPI.Is_initialized():
        return MPI
    init = getattr(_library(MPI), "MPI_Init_thread", None)
    _initializing.set()
    _initialized.clear()
    try:
        if init is None:
            MPI.Init_thread(MPI.THREAD_MULTIPLE)
        else:
            provided = ctypes.c_int(0)
            init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                             ctypes.POINTER(ctypes.c_int)]
            if init(None, None, MPI.THREAD_MULTIPLE, ctypes.byref(provided)) != 0:
                raise RuntimeError("MPI_Init_thread failed")
    finally:
        _initializing.clear()
        _initialized.set()
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):    # what mpi4py sets when it initialises
        comm.Set_errhandler(MPI.ERRORS_RETURN)
    return MPI


def finalize() -> None:
    """MPI_Finalize with the interpreter lock released, if MPI is up."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
        return
    fin = getattr(_library(MPI), "MPI_Finalize", None)
    heartbeat = sys.modules.get("dptrain.comm.heartbeat")     # no thread may call MPI after
    if heartbeat is not None:
        heartbeat.stop_all()
    _finalizing.set()
    if fin is None:
        MPI.Finalize()
    else:
        fin()


def mpi_running() -> bool:
    MPI = sys.modules.get("mpi4py.MPI")
    return MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() \
        and not _finalizing.is_set()


def kill_this_rank() -> None:
    """End this process so that the launcher ends the others: MPICH's mpiexec ends the job
    when a rank dies of a signal, not when one exits before MPI_Init."""
    os.kill(os.getpid(), signal.SIGKILL)


def join_and_abort(code: int) -> None:
    """Before MPI is up: initialise it (the others are on their way there), or wait for the
    main thread's MPI_Init, and abort the job with ``code``; if that does not happen within
    JOIN_TIMEOUT_S (a peer never comes), die of SIGKILL instead."""
    timer = threading.Timer(JOIN_TIMEOUT_S, kill_this_rank)
    timer.daemon = True
    timer.start()
    if _initializing.is_set():
        _initialized.wait()
        MPI = sys.modules["mpi4py.MPI"]
    else:
        MPI = initialize()
    if not MPI.Is_initialized():
        kill_this_rank()
    MPI.COMM_WORLD.Abort(code)
