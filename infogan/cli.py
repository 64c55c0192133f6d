"""The ``infogan`` command line: training, sample grids and code accuracy."""

from __future__ import annotations

import click

from infogan import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="infogan")
def main() -> None:
    """InfoGAN: a GAN whose codes (a categorical digit class, continuous style
    variables) are made recoverable from the image by a variational
    mutual-information bound.

    Run `infogan COMMAND --help` for the options of each command.
    """


if __name__ == "__main__":
    main()
