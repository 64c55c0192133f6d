"""The ``dim-search`` command line: build, extend and query a similarity index.

A thin layer over :class:`retrieval.Index`; every command has a Python equivalent.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from dim.core.cli import device_option, user_errors
from dim.core.ray_embedding import ENGINES, check_engine
from retrieval import __version__, cleanup
from retrieval.ann import INDEX_TYPES
from retrieval.cleanup import DEFAULT_KEEP, KEEP_RULES
from retrieval.dedup import (
    DEFAULT_THRESHOLD,
    DuplicateGroup,
    find_duplicates,
    report,
    save_contact_sheet,
    save_csv,
    save_histogram,
    score_histogram,
)
from retrieval.grid import save_result_grid
from retrieval.index import DEFAULT_TRAIN_MINUTES, MODEL_DIR, Index, QueryResult, train_model
from retrieval.lock import IndexLockedError
from retrieval.store import SKIPPED_FILE


def _check_engine_options(engine: str, address: str | None, num_workers: int | None) -> None:
    """:func:`dim.core.ray_embedding.check_engine` before any long work (training a model, listing the folder):
    a wrong combination of --engine, --address and --num-workers is a usage error, a missing Ray a plain one."""
    with user_errors(ImportError):
        try:
            check_engine(engine, address, num_workers)
        except ValueError as error:
            raise click.UsageError(str(error)) from error


def _summary(indexed: int, skipped: int, index_dir: Path) -> str:
    line = f"indexed {indexed}, skipped {skipped}"
    return line + (f" (reasons in {index_dir / SKIPPED_FILE})" if skipped else "")


_batch_size_option = click.option("--batch-size", default=256, show_default=True, help="Images per forward pass.")
_num_workers_option = click.option(
    "--num-workers", type=click.IntRange(min=0), default=None,
    help="Decoding processes of the local engine [default: one per CPU core, at most 8; the network gets the cores "
    "left, at least one thread].",
)
_engine_option = click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="Where the images are decoded and embedded: local (decoding processes on this machine) or ray (Ray Data: "
    "decoding and one model per actor, on a Ray started on this machine or on the cluster at --address; "
    "needs pip install 'dim-toolkit[ray]'). Both give the same vectors; the folder is listed and the index "
    "written here either way.",
)
_address_option = click.option(
    "--address",
    metavar="ADDR",
    default=None,
    help="With --engine ray: the Ray cluster to run on, HEAD:6379 (or auto: the cluster of this node); run the "
    "command on a node of that cluster, and keep the images on a filesystem every node mounts at the same path "
    "[default: a Ray started on this machine, on all its cores].",
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
    help="If another build, add, dedup --move-to or undo is writing the index, exit with a message instead of "
    "waiting for it.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dim-search")
def main() -> None:
    """Search image collections by example with features from a trained
    encoder (a DIM run or an InfoGAN discriminator) and a Faiss index.

    Run `dim-search COMMAND --help` for the options of each command.
    """


@main.command()
@click.argument("image_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--index",
    "index_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Index directory to write.",
)
@click.option(
    "--model",
    "run",
    metavar="RUN",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A trained run (directory or checkpoint.pt: DIM, InfoGAN, O-GAN or any model family with a feature "
    f"loader) to embed with. Without it, a DIM encoder is first trained on IMAGE_DIR into INDEX_DIR/{MODEL_DIR}.",
)
@click.option(
    "--train-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Without --model: the training budget in minutes [default: {DEFAULT_TRAIN_MINUTES:g}].",
)
@click.option(
    "--train-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Without --model: stop training after this many steps, if that comes before --train-minutes.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=16),
    default=None,
    help="Without --model: side of the training images [default: chosen from the images, 32, 64 or 96 px, and "
    "stated].",
)
@click.option(
    "--index-type",
    type=click.Choice(INDEX_TYPES),
    default="auto",
    show_default=True,
    help="auto: exact search up to 200k images, then IVF (nprobe tuned for recall@10 >= 0.95); flat, hnsw and "
    "ivf force a type; ivfpq stores 32-byte product-quantised codes (about 40 bytes an image, approximate "
    "scores) for collections too large for the vectors (docs: 'Large collections').",
)
@_batch_size_option
@device_option()
@_num_workers_option
@_engine_option
@_address_option
@click.option(
    "--overwrite", is_flag=True, help="Replace an index (and a model trained for it) already in the index directory."
)
@_no_wait_option
def build(
    image_dir: Path,
    index_dir: Path,
    run: Path | None,
    train_minutes: float | None,
    train_steps: int | None,
    image_size: int | None,
    index_type: str,
    batch_size: int,
    device: str,
    num_workers: int | None,
    engine: str,
    address: str | None,
    overwrite: bool,
    no_wait: bool,
) -> None:
    """Embed every image under IMAGE_DIR and write a search index to --index.

    Without --model, a DIM encoder is first trained on the images (the best
    preset, for --train-minutes, at an image size chosen from the images) and
    kept in INDEX_DIR/model; with --model RUN, the images are embedded with
    that trained run.

    Unreadable files are skipped and listed in INDEX_DIR/skipped.txt. Only one
    build or add writes an index at a time; a second one waits for the first.

    With --engine ray the images are decoded and embedded by Ray (on this
    machine, or on the cluster at --address); see "Large collections" in
    docs/guide/dim-search.md for running it on a cluster.
    """
    training = {"--train-minutes": train_minutes, "--train-steps": train_steps, "--image-size": image_size}
    given = [name for name, value in training.items() if value is not None]
    if run is not None and given:
        raise click.UsageError(f"{', '.join(given)} set the training of a model: leave them out with --model")
    _check_engine_options(engine, address, num_workers)
    with user_errors(IndexLockedError, ImportError):
        trained = run is None
        if trained:
            run = train_model(
                image_dir, index_dir, DEFAULT_TRAIN_MINUTES if train_minutes is None else train_minutes, train_steps,
                image_size, device,
                progress=True, overwrite=overwrite,
            )
        index = Index.build(
            run, image_dir, index_dir, index_type, batch_size, num_workers, device, progress=True,
            overwrite=overwrite, wait=not no_wait, engine=engine, address=address,
        )
    model = f"; model trained into {run}" if trained else ""
    click.echo(_summary(len(index), len(index.skipped), index_dir) + f"; {index.index_type} index in {index_dir}"
               + model)


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("image_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_model_override_option
@_batch_size_option
@device_option()
@_num_workers_option
@_engine_option
@_address_option
@_no_wait_option
def add(
    index_dir: Path,
    image_dir: Path,
    model_path: Path | None,
    batch_size: int,
    device: str,
    num_workers: int | None,
    engine: str,
    address: str | None,
    no_wait: bool,
) -> None:
    """Add the images under IMAGE_DIR that INDEX_DIR does not hold yet
    (already-indexed paths are left alone; previously skipped files are retried).

    Only one build or add writes an index at a time: a second one waits, then
    adds only what the first did not. --engine and --address are as for build."""
    _check_engine_options(engine, address, num_workers)
    with user_errors(IndexLockedError, ImportError):
        index = Index.load(index_dir, model_path, device)
        summary = index.add(image_dir, batch_size, num_workers, progress=True, wait=not no_wait, engine=engine,
                            address=address)
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


def _human_size(size: int | None) -> str:
    """Bytes in SI units: ``950 B``, ``12.3 kB``, ``4.5 MB``; ``gone`` for a file that is not there."""
    if size is None:
        return "gone"
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}"


def _format_group(number: int, group: DuplicateGroup, actions: dict[int, str]) -> list[str]:
    """A group as text: a heading, then one line per copy (action, score, id, pixels, size, date, path)."""
    heading = f"group {number}, {group.kind}: {group.size} copies"
    if group.kind == "near":
        heading += f", best pair {group.pairs[0][2]:.4f}"
    first_with = {}
    for image in group.images:
        first_with.setdefault(image.sha256, image.id)
    lines = [heading]
    for image in group.images:
        pixels = f"{image.width}x{image.height}" if image.width is not None else "?"
        date = datetime.fromtimestamp(image.modified).strftime("%Y-%m-%d %H:%M") if image.modified else "-"
        line = (f"  {actions.get(image.id, ''):4}  {image.best_score:.4f}  {image.id:>6}  {pixels:>11}  "
                f"{_human_size(image.file_size):>9}  {date}  {image.path}")
        same = first_with[image.sha256]
        if group.kind == "near" and image.sha256 is not None and same != image.id:
            line += f"  (same bytes as id {same})"
        lines.append(line)
    return lines


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
    "--json", "as_json", is_flag=True, help="One JSON object: {threshold, exact: [group], near: [group]}."
)
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the groups as CSV, one row per copy.")
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a contact sheet: one row of thumbnails per group, exact groups first.",
)
@click.option(
    "--tile-size", default=96, show_default=True, type=click.IntRange(min=8), help="Sheet thumbnail side, pixels."
)
@click.option("--histogram", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a PNG histogram of each image's nearest-neighbour score, to judge the threshold.")
@click.option("--keep", type=click.Choice(KEEP_RULES), default=DEFAULT_KEEP, show_default=True,
              help="Which copy of each group to keep: most pixels (then bytes), newest or oldest file, shortest "
              "path; ties go to the shorter path, then the first in order.")
@click.option("--prefer", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Keep a copy under this folder when a group has one (then --keep decides among those).")
@click.option("--move-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Move every copy not kept into this quarantine folder (outside the image root; relative "
              "layout kept, nothing deleted) and take it out of the index. `dim-search undo` puts them back.")
@click.option("--dry-run", is_flag=True, help="With --move-to: show what would move where, and move nothing.")
@_model_override_option
@_no_wait_option
def dedup(
    index_dir: Path,
    threshold: float,
    as_json: bool,
    csv_file: Path | None,
    sheet: Path | None,
    tile_size: int,
    histogram: Path | None,
    keep: str,
    prefer: Path | None,
    move_to: Path | None,
    dry_run: bool,
    model_path: Path | None,
    no_wait: bool,
) -> None:
    """Find groups of duplicate images in INDEX_DIR: exact duplicates (the same
    bytes) and near-duplicates (every pair at least --threshold alike joins one
    group), and mark the copy of each group to keep (--keep, --prefer).

    With --move-to DIR, every other copy is moved into DIR and taken out of the
    index; `dim-search undo INDEX_DIR` puts them back. A cleanup interrupted by a
    crash is finished by the next --move-to, or rolled back by undo."""
    if dry_run and move_to is None:
        raise click.UsageError("--dry-run shows what --move-to would do: give --move-to DIR too")
    with user_errors(IndexLockedError):
        index = Index.load(index_dir, model_path, device="cpu")
        if move_to is not None and not dry_run:
            finished = cleanup.finish_interrupted(index, wait=not no_wait)
            if finished is not None:
                click.echo(f"finished the interrupted cleanup {finished.directory} first", err=True)
        elif (pending := cleanup.interrupted(index_dir)) is not None:
            click.echo(
                f"note: the cleanup {pending.directory} was interrupted; run with --move-to to finish it, or "
                f"`dim-search undo {index_dir}` to roll it back",
                err=True,
            )
        groups = find_duplicates(index, threshold)
        decisions = cleanup.plan_moves(groups, keep, prefer)
    marks = cleanup.actions(decisions)
    if as_json:
        click.echo(json.dumps(report(groups, threshold, marks)))
    else:
        exact = sum(group.kind == "exact" for group in groups)
        click.echo(
            f"{exact} groups of exact duplicates (same bytes) and {len(groups) - exact} groups of near-duplicates "
            f"(cosine >= {threshold:g}) among {len(index)} images; keeping the {keep} copy of each"
            + (f", under {prefer} where there is one" if prefer else "")
        )
        for number, group in enumerate(groups, start=1):
            click.echo("\n" + "\n".join(_format_group(number, group, marks)))
    if csv_file is not None:
        save_csv(groups, csv_file, marks)
        click.echo(f"wrote {csv_file}", err=as_json)
    if histogram is not None:
        save_histogram(score_histogram(index), histogram, threshold)
        click.echo(f"wrote {histogram}", err=as_json)
    if sheet is not None and groups:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        save_contact_sheet(groups, sheet, tile_size)
        click.echo(f"wrote {sheet}", err=as_json)
    elif sheet is not None:
        click.echo(f"no groups: {sheet} not written", err=True)
    if move_to is None:
        return
    moved = sum(len(decision.moved) for decision in decisions)
    with user_errors(IndexLockedError):
        if dry_run:
            targets = cleanup.quarantine_targets(index, decisions, move_to)
            click.echo(f"would move {moved} copies of {len(decisions)} groups to {move_to}:", err=as_json)
            for image, target in targets:
                click.echo(f"  {image.path} -> {target}", err=as_json)
            return
        try:
            journal = cleanup.apply(index, decisions, move_to, wait=not no_wait)
        except OSError as error:
            if isinstance(error, (FileNotFoundError, FileExistsError)):
                raise
            raise click.ClickException(
                f"the cleanup stopped ({error}); run the same command again to finish it, or "
                f"`dim-search undo {index_dir}` to put back what moved"
            ) from error
    if journal is None:
        click.echo("nothing to move", err=as_json)
    else:
        click.echo(
            f"moved {moved} copies of {len(decisions)} groups to {move_to} (journal {journal.directory}); "
            f"the index holds {len(index)} images; `dim-search undo {index_dir}` puts them back",
            err=as_json,
        )


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_model_override_option
@_no_wait_option
def undo(index_dir: Path, model_path: Path | None, no_wait: bool) -> None:
    """Put back the files the newest `dim-search dedup --move-to` moved (or an
    interrupted one had moved), byte-identical, and their images into INDEX_DIR.
    Run it again to undo the cleanup before that one."""
    with user_errors(IndexLockedError):
        index = Index.load(index_dir, model_path, device="cpu")
        journal = cleanup.undo(index, wait=not no_wait)
    if journal is None:
        click.echo(f"nothing to undo: {index_dir} has no cleanup left")
        return
    click.echo(f"put back {len(journal.moves)} files from {journal.move_to}; the index holds {len(index)} images")
    earlier = len(cleanup.journals(index_dir))
    if earlier:
        click.echo(f"{earlier} earlier cleanup{'s' if earlier > 1 else ''} can be undone too: run undo again")


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
@click.option("--move-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Quarantine folder for the duplicates tab's Apply (as in `dim-search dedup --move-to`); "
              "without it the page reviews but moves nothing.")
@_model_override_option
@device_option()
def serve(
    index_dir: Path, port: int, host: str, open_browser: bool, move_to: Path | None, model_path: Path | None,
    device: str,
) -> None:
    """Serve a local web page over INDEX_DIR: browse the images by folder, click one
    for its nearest neighbours with their scores, search with an image from your disk,
    and review the duplicate groups with the keyboard (and, with --move-to, move the
    copies not kept). The JSON API behind it is described in docs/guide/dim-search.md.
    A newer index written by `dim-search add` is picked up."""
    from retrieval import serve as server  # Flask is imported only by this command

    with user_errors(IndexLockedError):
        server.serve(index_dir, host, port, open_browser, model_path, device, echo=click.echo, move_to=move_to)


if __name__ == "__main__":
    main()
