"""Test-only guard loaded into Spark's Python workers (never into the driver).

The featurize tests put this folder on the workers' PYTHONPATH through
`spark.executorEnv.PYTHONPATH` and name a log file in `spark.executorEnv.FRUITS_WORKER_GUARD`.
Every Python worker then records that it is armed, and refuses (and records) any attempt to
load model weights itself: opening an HDF5 file with h5py (how Keras reads .h5 weights), opening a
weights file from Python, or reaching the network (how Keras downloads "imagenet" weights).
"""

import os
import sys

LOG = os.environ.get("FRUITS_WORKER_GUARD")
WEIGHT_SUFFIXES = (".h5", ".keras", ".tflite", ".weights")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _record(line: str) -> None:
    with open(LOG, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()} {line}\n")


def _refuse(what: str) -> None:
    _record(f"BLOCKED {what}")
    raise PermissionError(f"worker_guard: a Python worker tried to {what}")


def _audit(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], str) and args[0].endswith(WEIGHT_SUFFIXES):
        _refuse(f"open weights file {args[0]}")
    elif event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else str(address)
        if not str(host).startswith("/") and host not in LOOPBACK:
            _refuse(f"connect to {host}")
    elif event == "socket.getaddrinfo" and args[0] not in LOOPBACK + (None,):
        _refuse(f"resolve {args[0]}")


def _guard_h5py() -> None:
    import h5py

    original_init = h5py.File.__init__

    def refusing_init(self, name, *args, **kwargs):
        _refuse(f"open HDF5 file {name}")
        original_init(self, name, *args, **kwargs)

    h5py.File.__init__ = refusing_init


if LOG:
    sys.addaudithook(_audit)
    _guard_h5py()
    _record("ARMED")
