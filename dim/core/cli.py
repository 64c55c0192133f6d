"""Command-line pieces every product's CLI shares: one-line user errors, the common options, preset hints.

Each product's command (``dim``, ``infogan``, ``dim-search``) is a thin click
layer over its Python API; what they have in common is defined here once:

* :func:`user_errors` turns expected failures (bad settings, missing files) into
  one-line ``Error: ...`` messages instead of tracebacks;
* :func:`data_dir_option`, :func:`device_option`, :func:`threads_option` and
  :func:`run_argument` (a run directory, shown as ``RUN``) mean the same in every command;
* :func:`config_defaults` and :func:`preset_hint` read option defaults and the
  ``[preset: ...]`` part of a help text off a product's ``TrainConfig`` and ``PRESETS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from types import SimpleNamespace
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_HELP = "Root of the named datasets (default $DIM_DATA_DIR, else ./data)."
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1 or mps."


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Show ``ValueError``, ``FileNotFoundError`` (and the ``extra`` types) as one-line errors, not tracebacks."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, *extra) as error:
        raise click.ClickException(str(error)) from error


def config_defaults(config_class: type) -> SimpleNamespace:
    """A dataclass's field defaults as attributes, read without building an instance."""
    return SimpleNamespace(**{field.name: field.default for field in fields(config_class)})


def preset_hint(presets: Mapping[str, Mapping[str, Any]], name: str) -> str:
    """What each preset sets ``name`` to, for a help text: ``[preset: best: infonce, paper: infonce]``."""
    return "[preset: " + ", ".join(f"{preset}: {values[name]}" for preset, values in presets.items()) + "]"


def data_dir_option(note: str = "") -> Callable[[F], F]:
    """``--data-dir DIR``: the root of the named datasets; ``note`` is added to the help text."""
    return click.option("--data-dir", type=click.Path(file_okay=False),
                        help=f"{DATA_DIR_HELP} {note}".strip())


def device_option(default: str = "auto") -> Callable[[F], F]:
    """``--device``: where the networks run."""
    return click.option("--device", default=default, show_default=True, help=DEVICE_HELP)


def threads_option(default: int = 0) -> Callable[[F], F]:
    """``--threads N``: the CPU threads torch may use (0: torch's default)."""
    return click.option("--threads", type=click.IntRange(min=0), default=default, show_default=True,
                        help="CPU threads torch may use (0: torch's default).")


def run_argument(name: str = "run") -> Callable[[F], F]:
    """A trained run, named ``RUN`` in every command: its directory or its ``checkpoint.pt``."""
    return click.argument(name, metavar="RUN", type=click.Path(exists=True))
