"""A pure-Python wheel of single-file modules, byte-for-byte reproducible.

Databricks installs a job's Python dependencies as libraries (it has no `--py-files`), so the
code bundle also carries the jobs' library (every module but the job scripts) as a wheel. Fixed
timestamps and a sorted file order keep the bundle's content hash stable.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip has no "no timestamp": any constant keeps bytes stable


def wheel_filename(distribution: str, version: str) -> str:
    return f"{distribution}-{version}-py3-none-any.whl"


def build_wheel(distribution: str, version: str, modules: dict[str, bytes]) -> bytes:
    """A wheel installing each `name.py -> content` of `modules` at the top level."""
    dist_info = f"{distribution}-{version}.dist-info"
    files = dict(sorted(modules.items()))
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: fruits\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{name},sha256={_digest(content)},{len(content)}" for name, content in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def _digest(content: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
