"""A read-only FUSE passthrough that waits a fixed time in every open(): a local folder that
answers like an object store, where each photo is its own GET and the first byte comes after a
round trip (S3: 10-100 ms for a small object).

    python -m benchmarks.slow_fs SOURCE MOUNTPOINT --delay-ms 30     # serves until unmounted

`mounted(source, delay_ms)` runs it in its own process for the length of a `with` block and
unmounts it on the way out, whatever ends the block (an error, Ctrl-C, SIGTERM). Needs fuse3
(`fusermount3`), /dev/fuse and the `mfusepy` package; `missing_requirements()` says which are
absent. Reads themselves are not slowed: S3 streams a small object at once after its first byte.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

MFUSEPY = "mfusepy==3.1.1"
MOUNT_TIMEOUT_S = 20.0


def missing_requirements() -> list[str]:
    """What this machine lacks to mount the passthrough, each with how to get it."""
    missing = []
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse (the FUSE kernel device: not available in this container)")
    if shutil.which("fusermount3") is None:
        missing.append("fusermount3 (Debian: apt-get install -y fuse3)")
    if find_spec("mfusepy") is None:
        missing.append(f"mfusepy (uv pip install {MFUSEPY})")
    return missing


def passthrough(source: Path, delay_s: float):
    """The FUSE operations: `source` read-only, every open() `delay_s` late."""
    import mfusepy

    class SlowReadOnly(mfusepy.Operations):
        use_ns = True

        def _real(self, path: str) -> str:
            return os.path.join(source, path.lstrip("/"))

        def getattr(self, path: str, fh: int | None = None) -> dict:
            try:
                st = os.lstat(self._real(path))
            except OSError as error:
                raise mfusepy.FuseOSError(error.errno) from None
            # No write bit: the mount is read-only, as the photos are to the job.
            mode = st.st_mode & ~0o222
            fields = ("st_size", "st_nlink", "st_uid", "st_gid", "st_atime_ns", "st_mtime_ns")
            attributes = {name.replace("_ns", ""): getattr(st, name) for name in fields}
            return {**attributes, "st_mode": mode, "st_ctime": st.st_ctime_ns}

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._real(path))]

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC):
                raise mfusepy.FuseOSError(errno.EROFS)
            time.sleep(delay_s)  # the object store's time to first byte
            return os.open(self._real(path), os.O_RDONLY)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

    return SlowReadOnly()


def serve(source: Path, mountpoint: Path, delay_ms: float) -> None:
    """Mount and serve in the foreground, many requests at once (as S3 serves many GETs)."""
    import mfusepy

    mfusepy.FUSE(
        passthrough(source, delay_ms / 1000),
        str(mountpoint),
        foreground=True,
        nothreads=False,
        ro=True,
        fsname="slow_fs",
    )


@contextmanager
def mounted(source: Path, delay_ms: float) -> Iterator[Path]:
    """`source`, mounted read-only with `delay_ms` per open(), in a temporary folder."""
    problems = missing_requirements()
    if problems:
        raise RuntimeError("cannot mount the FUSE passthrough, missing: " + "; ".join(problems))
    mountpoint = Path(tempfile.mkdtemp(prefix="slow-fs-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.slow_fs", str(source), str(mountpoint)]
        + ["--delay-ms", str(delay_ms)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        wait_for_mount(mountpoint, server)
        yield mountpoint
    finally:
        unmount(mountpoint, server)


def wait_for_mount(mountpoint: Path, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    while not os.path.ismount(mountpoint):
        if server.poll() is not None:
            raise RuntimeError(f"the FUSE server exited with code {server.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{mountpoint} was not mounted within {MOUNT_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def unmount(mountpoint: Path, server: subprocess.Popen) -> None:
    """Unmount (lazily if a reader still holds a file), stop the server, remove the folder."""
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
    try:
        server.wait(timeout=10)  # it returns once unmounted
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    with contextlib.suppress(OSError):  # still busy: left, empty, in the temporary folder
        mountpoint.rmdir()


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM (and SIGINT, as Python does by default) unwind the stack, so `finally` blocks
    run and unmount; without this, SIGTERM would end the process and leave a dead mount."""

    def interrupt(number: int, _frame) -> None:
        raise KeyboardInterrupt(f"signal {number}")

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM,)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--delay-ms", type=float, default=30.0)
    args = parser.parse_args(argv)
    serve(args.source.resolve(), args.mountpoint, args.delay_ms)


if __name__ == "__main__":
    main()
