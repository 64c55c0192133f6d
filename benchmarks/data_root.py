"""The dataset root of the benchmark scripts: ``--data-dir DATA``, by default ``$DIM_DATA_DIR``.

The toolkit's commands fall back to ``./data`` (and download what is missing there); a benchmark
instead stops with a message when it needs data and was given neither, since its figures belong
to a copy of the data the user chose.
"""

from __future__ import annotations

import argparse
import os

DATA_DIR_VARIABLE = "DIM_DATA_DIR"


def add_data_dir_argument(parser: argparse.ArgumentParser, description: str) -> None:
    """Add ``--data-dir DATA`` to ``parser``; its default is ``$DIM_DATA_DIR``, or ``None`` when that is unset."""
    parser.add_argument("--data-dir", metavar="DATA", default=os.environ.get(DATA_DIR_VARIABLE) or None,
                        help=f"{description} (default: ${DATA_DIR_VARIABLE})")


def require_data_dir(data_dir: str | os.PathLike | None) -> str:
    """``data_dir`` as a string, for a benchmark that needs the data.

    Raises:
        SystemExit: with a message naming both ways to give it, when ``data_dir`` is ``None`` or empty.
    """
    if not data_dir:
        raise SystemExit(f"no dataset root: pass --data-dir DATA or set ${DATA_DIR_VARIABLE}")
    return os.fspath(data_dir)
