"""What the entry points share: input that cannot be used is one line on stderr and exit status 1, not a
traceback. Nothing heavy is imported here: the entry points parse their arguments before torch is loaded.

Each entry point's main() raises as any function does (tests call it in-process); `run` is what the command
line gets.
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path


class BadInput(Exception):
    """A file, folder or model named on the command line that cannot be used as it is."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def run(main: Callable[[], int | None], prog: str, errors: tuple[type[BaseException], ...] = ()) -> int:
    """main()'s exit status; BadInput, and the `errors` a command expects from its inputs, as one line.

    A command whose whole run reads its inputs (score, export, filter) passes OSError and ValueError; one
    that also trains or tests (train, evaluate) raises BadInput from its checks only, so that a bug in the
    loop keeps its traceback.
    """
    try:
        return main() or 0
    except (BadInput, *errors) as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1


def check_checkpoint_file(path: str | Path) -> None:
    """A .ckpt that exists and is a torch archive, before seconds of imports and loading find out otherwise."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no checkpoint at {path}")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not a checkpoint file (.ckpt written by train.py)")
    # torch.save writes a zip archive; a text file, a truncated download or a parquet file is not one.
    if not zipfile.is_zipfile(path):
        raise BadInput(
            f"{path} is not a checkpoint: not a file written by torch.save (corrupt or truncated?)"
        )


def looks_local(source: str) -> bool:
    """Whether a data source that does not exist was meant as a local path rather than a Hub id or a glob."""
    if "://" in source or "*" in source:
        return False
    return source.startswith(("/", ".", "~")) or source.count("/") != 1


def check_labeled_data(datamodule, splits: Iterable[str]) -> None:
    """List each split's labeled shards as training or testing will, and say in one line what is wrong.

    Reading the shards' footers finds a missing or empty folder, a file that is not parquet and a split with
    no rows, before minutes of model loading.
    """
    import pyarrow.parquet as pq

    root = str(datamodule.hparams.root)
    if not Path(root).exists() and looks_local(root):
        raise BadInput(f"no labeled data at {root}: no such file or folder")
    if Path(root).exists():
        # pyarrow's message for a corrupt file does not say which file it is.
        for path in sorted(Path(root).rglob("*.parquet")) if Path(root).is_dir() else [Path(root)]:
            try:
                pq.read_schema(path)
            except (OSError, ValueError) as e:
                raise BadInput(f"{path} is not a readable parquet file: {one_line(e)}") from e
    for split in splits:
        try:
            datamodule.stream(split)
        except (OSError, ValueError) as e:
            raise BadInput(f"labeled data {root}, split {split!r}: {one_line(e)}") from e


def process_age_s() -> float | None:
    """Seconds since this process started (Linux), so that start-up can be reported from the real start:
    interpreter, imports and all. None where /proc is not there."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
