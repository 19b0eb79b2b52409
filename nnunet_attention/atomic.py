"""Write files so that an interrupted write never leaves a file that looks complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden sibling path to write to; it replaces ``path`` only when the ``with`` block succeeds.

    The temporary name keeps ``path``'s suffixes (``.partial-x.nii.gz``), so writers that pick the format from
    the extension (SimpleITK, matplotlib) behave as for ``path``. On error the partial file is removed.
    """
    path = Path(path)
    partial = path.with_name(f".partial-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
