"""The ``dim`` command line: Deep InfoMax training, evaluation and embedding export."""

from __future__ import annotations

import click

from dim import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dim")
def main() -> None:
    """Deep InfoMax: learn image features without labels by maximising the
    mutual information between an image and its code.

    Run `dim COMMAND --help` for the options of each command.
    """


if __name__ == "__main__":
    main()
