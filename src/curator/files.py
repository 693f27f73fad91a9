"""Writing a file so that a reader never sees half of it: the one atomic-write helper every stage uses."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temporary name beside `path`, then rename it into place (atomic on one file system).

    A crash or kill leaves at most a `.<name>.tmp-<pid>` file, which readers never take for the real one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
