"""featurize's accounting: every listed photo is featurized or quarantined, exactly once.

Counts first, paths only when the counts differ; a photo that gave no row gets the reason the
driver finds reading it, and the quarantine is written by the driver as one Parquet file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pyarrow as pa

from image_reading import MAX_FILE_BYTES

EMPTY_FILE_ERROR = "ValueError: empty file"
TOO_LARGE_ERROR = f"ValueError: file too large: over {MAX_FILE_BYTES} bytes"
QUARANTINE_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string())])


def quarantine_parquet(unreadable: dict[str, str]) -> bytes:
    """path -> error as one Parquet file, sorted by path.

    The driver already holds these rows, a few per run as a rule: written from here they need
    no Spark job (even a one-task job costs its scheduling) and make one file, not one per
    partition.
    """
    import pyarrow.parquet as pq

    paths = sorted(unreadable)
    table = pa.table([paths, [unreadable[p] for p in paths]], schema=QUARANTINE_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@dataclass(frozen=True)
class Accounting:
    """How the listed images that gave no row and no error are accounted for."""

    quarantined: dict[str, str]  # path -> the reason the driver found
    missing: list[str]  # listed, read fine by the driver, yet neither featurized nor quarantined
    unexpected: list[str]  # featurized or quarantined but not listed, or featurized twice


def account_for(
    listed: Collection[str],
    featurized: int,
    quarantined: dict[str, str],
    featurized_paths: Callable[[], list[str]],
    why_unread: Callable[[str], str | None],
) -> Accounting:
    """Check that every listed image is featurized or quarantined, exactly once.

    Counts first: every listed image gives at most one row, so the paths are only compared when
    the counts differ. A listed image that gave no row (Spark plans no read of a zero-byte file,
    skips one it cannot read, drops one over MAX_FILE_BYTES) gets the reason `why_unread` finds
    reading it on the driver; one that reads fine there stays `missing`.
    """
    listed_set = set(listed)
    if featurized + len(quarantined) == len(listed_set) and quarantined.keys() <= listed_set:
        return Accounting({}, [], [])
    paths = featurized_paths()
    seen = set(paths) | quarantined.keys()
    twice = {path for path, times in Counter(paths).items() if times > 1}
    found: dict[str, str] = {}
    missing = []
    for path in sorted(listed_set - seen):
        reason = why_unread(path)
        if reason:
            found[path] = reason
        else:
            missing.append(path)
    return Accounting(found, missing, sorted((seen - listed_set) | twice))


def unread_reason(path: str, probe: Callable[[str], int]) -> str | None:
    """Why a listed image gave no row, from reading it on the driver (jobio.probe); None when
    the driver reads it fine."""
    try:
        length = probe(path)
    except OSError as error:
        return f"cannot be read: {error}"[:500]
    if length == 0:
        return EMPTY_FILE_ERROR
    if length > MAX_FILE_BYTES:
        return TOO_LARGE_ERROR
    return None


def unaccounted_message(input_uri: str, accounting: Accounting, shown: int = 20) -> str:
    lines = [f"featurize: the images under {input_uri} do not add up:"]
    if accounting.missing:
        lines.append(
            f"{len(accounting.missing)} listed images were neither featurized nor quarantined, "
            "though the driver reads them (Spark skipped them: see 'Skipped the rest of the "
            "content in the corrupted file' in the executors' logs):"
        )
        lines += [f"  {path}" for path in accounting.missing[:shown]]
    if accounting.unexpected:
        lines.append(
            f"{len(accounting.unexpected)} images were featurized twice or not listed "
            "(written to the input during the run?):"
        )
        lines += [f"  {path}" for path in accounting.unexpected[:shown]]
    return "\n".join(lines)
