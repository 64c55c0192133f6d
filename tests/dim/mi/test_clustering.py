import math

import pytest
import torch
import torch.nn.functional as F

from dim.mi import PairedCategoricalMI


def reference_mi(logits: torch.Tensor, paired_logits: torch.Tensor) -> float:
    """IIC's I(c; c') with plain Python loops over the batch and the K x K cells."""
    p, q = logits.softmax(1).tolist(), paired_logits.softmax(1).tolist()
    batch, k = len(p), len(p[0])
    joint = [[sum(p[b][i] * q[b][j] for b in range(batch)) / batch for j in range(k)] for i in range(k)]
    joint = [[(joint[i][j] + joint[j][i]) / 2 for j in range(k)] for i in range(k)]
    marginal = [sum(row) for row in joint]
    return sum(
        joint[i][j] * (math.log(joint[i][j]) - math.log(marginal[i]) - math.log(marginal[j]))
        for i in range(k) for j in range(k) if joint[i][j] > 0
    )


def test_matches_the_loop_reference():
    torch.manual_seed(0)
    logits, paired = torch.randn(16, 5) * 2, torch.randn(16, 5) * 2
    out = PairedCategoricalMI()(logits, paired)
    assert out.mi.item() == pytest.approx(reference_mi(logits, paired), abs=1e-5)
    assert out.loss.item() == pytest.approx(-out.mi.item())


def test_confident_balanced_agreement_reaches_log_k():
    classes = torch.arange(40) % 8  # every class used equally often
    logits = 40.0 * F.one_hot(classes, 8).float()
    assert PairedCategoricalMI()(logits, logits).mi.item() == pytest.approx(math.log(8), abs=1e-4)


def test_one_cluster_and_uniform_assignments_carry_nothing():
    one_cluster = 40.0 * F.one_hot(torch.zeros(32, dtype=torch.long), 6).float()
    assert PairedCategoricalMI()(one_cluster, one_cluster).mi.item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(32, 6)
    assert PairedCategoricalMI()(uniform, uniform).mi.item() == pytest.approx(0.0, abs=1e-6)


def test_unrelated_copies_carry_nothing_and_relabelled_ones_are_symmetrised():
    classes = torch.arange(9) % 3
    logits = 40.0 * F.one_hot(classes, 3).float()
    independent = 40.0 * F.one_hot(torch.arange(9) // 3, 3).float()  # every pair of classes exactly once
    assert PairedCategoricalMI()(logits, independent).mi.item() == pytest.approx(0.0, abs=1e-5)
    # c' = c - 1 (mod 3): the joint puts 1/3 on three off-diagonal cells, 1/6 on six once symmetrised,
    # with marginals 1/3, so I = 6 * (1/6) * ln((1/6) / (1/9)) = ln 1.5, not ln 3.
    relabelled = 40.0 * F.one_hot(classes.roll(1), 3).float()
    assert PairedCategoricalMI()(logits, relabelled).mi.item() == pytest.approx(math.log(1.5), abs=1e-5)


def test_gradient_is_finite_on_empty_cells():
    logits = (40.0 * F.one_hot(torch.arange(12) % 3, 5).float()).requires_grad_()  # classes 3 and 4 unused
    PairedCategoricalMI()(logits, logits.detach()).loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="paired_logits must have the shape"):
        PairedCategoricalMI()(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\(B, K\) with K >= 2"):
        PairedCategoricalMI()(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="eps must be positive"):
        PairedCategoricalMI(eps=0)
