"""Image similarity search: embed a folder with a trained encoder and index it with Faiss.

Python API (the ``dim-search`` command line mirrors it)::

    from retrieval import Index
    index = Index.build("runs/cifar10", "photos/", "photos.index")  # dim-search build
    index = Index.load("photos.index")                               # (used by add and query)
    index.add("photos/")                                             # dim-search add
    results = index.search(["photos/cat.jpg"], k=10)                 # dim-search query
    groups = find_duplicates(index, threshold=0.95)                  # dim-search dedup
    cleanup.apply(index, cleanup.plan_moves(groups), "quarantine/")  # dim-search dedup --move-to
    cleanup.undo(index)                                              # dim-search undo
"""

from dim import __version__
from retrieval.ann import choose_index_spec
from retrieval.dedup import DuplicateGroup, find_duplicates, save_contact_sheet
from retrieval.grid import result_grid, save_result_grid
from retrieval.index import (
    AddSummary,
    Index,
    ModelMismatchError,
    Neighbour,
    QueryResult,
)
from retrieval.lock import IndexLock, IndexLockedError
from retrieval.models import ModelFingerprint, fingerprint, load_model
from retrieval.store import DamagedIndexError

__all__ = [
    "AddSummary",
    "DamagedIndexError",
    "DuplicateGroup",
    "Index",
    "IndexLock",
    "IndexLockedError",
    "ModelFingerprint",
    "ModelMismatchError",
    "Neighbour",
    "QueryResult",
    "__version__",
    "choose_index_spec",
    "find_duplicates",
    "fingerprint",
    "load_model",
    "result_grid",
    "save_contact_sheet",
    "save_result_grid",
]
