"""The ``dim-search`` command line: build, extend and query a similarity index.

A thin layer over :class:`retrieval.Index`; every command has a Python equivalent.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from dim.core.cli import device_option, user_errors
from retrieval import __version__
from retrieval.ann import INDEX_TYPES
from retrieval.dedup import DEFAULT_THRESHOLD, find_duplicates, save_contact_sheet
from retrieval.grid import save_result_grid
from retrieval.index import Index, QueryResult
from retrieval.lock import IndexLockedError
from retrieval.store import SKIPPED_FILE


def _summary(indexed: int, skipped: int, index_dir: Path) -> str:
    line = f"indexed {indexed}, skipped {skipped}"
    return line + (f" (reasons in {index_dir / SKIPPED_FILE})" if skipped else "")


_batch_size_option = click.option("--batch-size", default=256, show_default=True, help="Images per forward pass.")
_num_workers_option = click.option(
    "--num-workers", type=click.IntRange(min=0), default=None, help="Decoding processes [default: CPU cores - 1]."
)
_model_override_option = click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Run (directory or checkpoint.pt) to use instead of the one recorded in the index (it must hold the "
    "same model).",
)
_no_wait_option = click.option(
    "--no-wait",
    is_flag=True,
    help="If another build or add is writing the index, exit with a message instead of waiting for it.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dim-search")
def main() -> None:
    """Search image collections by example with features from a trained
    encoder (a DIM run or an InfoGAN discriminator) and a Faiss index.

    Run `dim-search COMMAND --help` for the options of each command.
    """


@main.command()
@click.argument("run", metavar="RUN", type=click.Path(exists=True, path_type=Path))
@click.argument("image_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--index",
    "index_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Index directory to write.",
)
@click.option(
    "--index-type",
    type=click.Choice(INDEX_TYPES),
    default="auto",
    show_default=True,
    help="auto: exact search up to 200k images, then IVF (nprobe tuned for recall@10 >= 0.95).",
)
@_batch_size_option
@device_option()
@_num_workers_option
@click.option("--overwrite", is_flag=True, help="Replace an index that already exists in the index directory.")
@_no_wait_option
def build(
    run: Path,
    image_dir: Path,
    index_dir: Path,
    index_type: str,
    batch_size: int,
    device: str,
    num_workers: int | None,
    overwrite: bool,
    no_wait: bool,
) -> None:
    """Embed every image under IMAGE_DIR with the trained model of RUN (a run
    directory or its checkpoint.pt: DIM, InfoGAN, O-GAN or any model family with
    a feature loader) and write a search index to --index.

    Unreadable files are skipped and listed in INDEX_DIR/skipped.txt. Only one
    build or add writes an index at a time; a second one waits for the first.
    """
    with user_errors(IndexLockedError):
        index = Index.build(
            run, image_dir, index_dir, index_type, batch_size, num_workers, device, progress=True,
            overwrite=overwrite, wait=not no_wait,
        )
    click.echo(_summary(len(index), len(index.skipped), index_dir) + f"; {index.index_type} index in {index_dir}")


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("image_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_model_override_option
@_batch_size_option
@device_option()
@_num_workers_option
@_no_wait_option
def add(
    index_dir: Path,
    image_dir: Path,
    model_path: Path | None,
    batch_size: int,
    device: str,
    num_workers: int | None,
    no_wait: bool,
) -> None:
    """Add the images under IMAGE_DIR that INDEX_DIR does not hold yet
    (already-indexed paths are left alone; previously skipped files are retried).

    Only one build or add writes an index at a time: a second one waits, then
    adds only what the first did not."""
    with user_errors(IndexLockedError):
        index = Index.load(index_dir, model_path, device)
        summary = index.add(image_dir, batch_size, num_workers, progress=True, wait=not no_wait)
    click.echo(
        _summary(summary.added, summary.skipped, index_dir)
        + f"; {summary.already_indexed} already indexed; the {index.index_type} index now holds {len(index)} images"
    )


def _format_table(result: QueryResult) -> str:
    lines = [f"query: {result.query}", f"{'rank':>5}  {'score':>7}  path"]
    lines += [f"{hit.rank:>5}  {hit.score:>7.4f}  {hit.path}" for hit in result.neighbours]
    return "\n".join(lines)


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Neighbours per query.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per query: {query, results: [{path, score, rank, id}]}."
)
@click.option(
    "--grid",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an image grid: one row per query, the query (framed) then its neighbours.",
)
@click.option(
    "--tile-size", default=96, show_default=True, type=click.IntRange(min=8), help="Grid thumbnail side, pixels."
)
@_model_override_option
@device_option()
def query(
    index_dir: Path,
    images: tuple[Path, ...],
    k: int,
    as_json: bool,
    grid: Path | None,
    tile_size: int,
    model_path: Path | None,
    device: str,
) -> None:
    """Find the K indexed images most similar (cosine) to each IMAGE; an
    IMAGE may be inside the index (it then comes first, score 1) or anywhere else."""
    with user_errors(IndexLockedError):
        index = Index.load(index_dir, model_path, device)
        results = index.search(list(images), k)
    for number, result in enumerate(results):
        if as_json:
            click.echo(json.dumps(result.to_dict()))
        else:
            click.echo(("\n" if number else "") + _format_table(result))
    if grid is not None:
        grid.parent.mkdir(parents=True, exist_ok=True)
        save_result_grid(results, grid, tile_size)
        click.echo(f"wrote {grid}", err=as_json)


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--threshold",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    type=click.FloatRange(-1.0, 1.0),
    help="Cosine similarity at or above which two images are near-duplicates (identical files score 1).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object: {threshold, groups: [{size, images, pairs}]}."
)
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a contact sheet: one row of thumbnails per group, largest group first.",
)
@click.option(
    "--tile-size", default=96, show_default=True, type=click.IntRange(min=8), help="Sheet thumbnail side, pixels."
)
@_model_override_option
def dedup(
    index_dir: Path, threshold: float, as_json: bool, sheet: Path | None, tile_size: int, model_path: Path | None
) -> None:
    """Find groups of near-duplicate images in INDEX_DIR: every pair of images at
    least --threshold alike joins one group (connected components), largest group first."""
    with user_errors(IndexLockedError):
        index = Index.load(index_dir, model_path, device="cpu")
        groups = find_duplicates(index, threshold)
    if as_json:
        click.echo(json.dumps({"threshold": threshold, "groups": [group.to_dict() for group in groups]}))
    else:
        click.echo(f"{len(groups)} groups of near-duplicates (cosine >= {threshold:g}) among {len(index)} images")
        for number, group in enumerate(groups, start=1):
            click.echo(f"\ngroup {number}: {group.size} images, best pair {group.pairs[0][2]:.4f}")
            for image in group.images:
                click.echo(f"  {image.best_score:.4f}  {image.path}")
    if sheet is not None and groups:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        save_contact_sheet(groups, sheet, tile_size)
        click.echo(f"wrote {sheet}", err=as_json)
    elif sheet is not None:
        click.echo(f"no groups: {sheet} not written", err=True)


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but loopback lets others on the network see every indexed image (warned).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
@_model_override_option
@device_option()
def serve(index_dir: Path, port: int, host: str, open_browser: bool, model_path: Path | None, device: str) -> None:
    """Serve a local web page over INDEX_DIR: browse the images by folder, click one
    for its nearest neighbours with their scores, search with an image from your disk,
    and see the near-duplicate groups. The JSON API behind it is described in
    docs/guide/dim-search.md. A newer index written by `dim-search add` is picked up."""
    from retrieval import serve as server  # Flask is imported only by this command

    with user_errors(IndexLockedError):
        server.serve(index_dir, host, port, open_browser, model_path, device, echo=click.echo)


if __name__ == "__main__":
    main()
