"""Beam's SDK worker process as the LocalRunner starts it: the same worker
(`apache_beam.runners.worker.sdk_worker_main`), made to die with the driver.

Beam's local workers do not exit when their control channel to a killed driver breaks
(kill -9 of `lift3d lift` left them running); Linux's parent-death signal is set first here
(in the worker, not in a fork handler of the multi-threaded driver, where gRPC objects to
forking). Hand-written: no library offers it.
"""
import os
import runpy
import signal
import sys

if sys.platform.startswith("linux"):
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the driver died before the signal was set
        sys.exit(1)
runpy.run_module("apache_beam.runners.worker.sdk_worker_main", run_name="__main__", alter_sys=True)
