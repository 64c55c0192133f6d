"""The checkpoint layout: atomic writes, weights-only loads, and refusals that name the problem."""

from __future__ import annotations

import pytest
import torch

from dim.core.atomic import atomic_save
from dim.core.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEYS,
    checkpoint_file,
    load_checkpoint,
    make_checkpoint,
)


def test_make_checkpoint_holds_the_documented_keys_and_round_trips(tmp_path):
    layer = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    checkpoint = make_checkpoint("toy", {"lr": 0.1}, 7, {"model": layer}, {"model": optimizer}, [], {"epoch": 2})
    assert tuple(checkpoint) == CHECKPOINT_KEYS and checkpoint["format"] == CHECKPOINT_FORMAT
    atomic_save(checkpoint, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(tmp_path, "toy")  # a run directory resolves to its checkpoint.pt
    assert loaded["step"] == 7 and loaded["state"] == {"epoch": 2} and loaded["config"] == {"lr": 0.1}
    assert torch.equal(loaded["modules"]["model"]["weight"], layer.weight.detach())
    momentum = loaded["optimizers"]["model"]["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, optimizer.state[layer.weight]["momentum_buffer"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weights": torch.zeros(1)}, "not a checkpoint written by this toolkit"),
        ({"kind": "toy", "format": 1}, "format 1, but this version of dim-toolkit reads format 2"),
        ({"kind": "toy", "format": CHECKPOINT_FORMAT, "step": 1}, r"lacks the checkpoint entries \['config'"),
        (make_checkpoint("other", {}, 0, {}, {}, []), "'other' checkpoint, but one of \\['toy', 'dim'\\] is needed"),
    ],
)
def test_foreign_files_are_refused_with_the_reason(tmp_path, content, message):
    torch.save(content, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=message):
        load_checkpoint(tmp_path, ["toy", "dim"])


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path, None)
    with pytest.raises(FileNotFoundError, match="pass a run directory or its checkpoint.pt"):
        checkpoint_file(tmp_path / "missing.pt")
