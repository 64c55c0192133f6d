"""The ``dim-search`` command line: build, extend and query a similarity index."""

from __future__ import annotations

import click

from retrieval import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dim-search")
def main() -> None:
    """Search image collections by example with features from a trained
    encoder (a DIM run or an InfoGAN discriminator) and a Faiss index.

    Run `dim-search COMMAND --help` for the options of each command.
    """


if __name__ == "__main__":
    main()
