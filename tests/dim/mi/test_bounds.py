"""Each bound against values computed by hand on tiny score tensors."""

import math

import pytest
import torch

from dim.mi import (
    DonskerVaradhanBound,
    InfoNCEBound,
    JensenShannonBound,
    NWJBound,
    make_bound,
)

# Row i holds z_i; the diagonal is the positive pair. B = 2.
SCORES = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
POSITIVE = torch.tensor([2.0, 3.0])
NEGATIVE = torch.tensor([[0.0], [1.0]])  # (B, K=1): the off-diagonal of each row


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_jensen_shannon_by_hand():
    out = JensenShannonBound()(POSITIVE, NEGATIVE)
    loss = (softplus(0.0) + softplus(1.0)) / 2 + (softplus(-2.0) + softplus(-3.0)) / 2
    mi = 1 + (2.0 + 3.0) / 2 - (math.exp(0.0) + math.exp(1.0)) / 2
    assert out.loss.item() == pytest.approx(loss, rel=1e-6)
    assert out.mi.item() == pytest.approx(mi, rel=1e-6)


def test_nwj_by_hand():
    out = NWJBound()(POSITIVE, NEGATIVE)
    mi = (2.0 + 3.0) / 2 - (math.exp(-1.0) + math.exp(0.0)) / 2
    assert out.mi.item() == pytest.approx(mi, rel=1e-6)
    assert out.loss.item() == pytest.approx(-mi, rel=1e-6)


def test_donsker_varadhan_by_hand():
    out = DonskerVaradhanBound()(POSITIVE, NEGATIVE)
    mi = (2.0 + 3.0) / 2 - math.log((math.exp(0.0) + math.exp(1.0)) / 2)
    assert out.mi.item() == pytest.approx(mi, rel=1e-6)
    assert out.loss.item() == pytest.approx(-mi, rel=1e-6)


def test_infonce_by_hand():
    out = InfoNCEBound()(POSITIVE, NEGATIVE)
    row0 = 2.0 - math.log(math.exp(2.0) + math.exp(0.0))
    row1 = 3.0 - math.log(math.exp(3.0) + math.exp(1.0))
    mi = (row0 + row1) / 2 + math.log(2)
    assert out.mi.item() == pytest.approx(mi, rel=1e-6)
    assert out.loss.item() == pytest.approx(-mi, rel=1e-6)


def test_infonce_never_exceeds_log_batch():
    batch = 16
    scores = torch.full((batch, batch), -50.0)
    scores.fill_diagonal_(50.0)  # perfectly separated: the estimate saturates at log B
    positive = scores.diagonal()
    negative = scores[~torch.eye(batch, dtype=torch.bool)].view(batch, batch - 1)
    mi = InfoNCEBound()(positive, negative).mi
    assert mi.item() <= math.log(batch) + 1e-6
    assert mi.item() == pytest.approx(math.log(batch), abs=1e-4)


def test_infonce_refuses_shuffled_negatives():
    with pytest.raises(ValueError, match="all in-batch pairs"):
        InfoNCEBound()(torch.zeros(8), torch.zeros(8, 1))
    capped = InfoNCEBound(require_all_pairs=False)(torch.full((8,), 30.0), torch.zeros(8, 1))
    assert capped.mi.item() == pytest.approx(math.log(2), abs=1e-6)


def test_local_bounds_average_over_locations():
    # Two locations whose scores are the global example and its shift by +1.
    positive = torch.stack([POSITIVE, POSITIVE + 1], dim=-1)  # (B, L=2)
    negative = torch.stack([NEGATIVE, NEGATIVE + 1], dim=-1)  # (B, K, L)
    for bound in (JensenShannonBound(), NWJBound(), DonskerVaradhanBound(), InfoNCEBound()):
        per_location = [bound(positive[..., l], negative[..., l]) for l in range(2)]
        out = bound(positive, negative)
        assert out.loss.item() == pytest.approx(sum(o.loss.item() for o in per_location) / 2, rel=1e-6)
        assert out.mi.item() == pytest.approx(sum(o.mi.item() for o in per_location) / 2, rel=1e-6)


@pytest.mark.parametrize("name", ["jsd", "infonce", "dv", "nwj"])
def test_estimate_is_detached_and_loss_has_gradient(name):
    positive = POSITIVE.clone().requires_grad_()
    negative = NEGATIVE.clone().requires_grad_()
    out = make_bound(name)(positive, negative)
    assert not out.mi.requires_grad
    out.loss.backward()
    assert positive.grad is not None and negative.grad is not None
    # The gradient is the loss's true derivative: autograd against finite differences, in double precision.
    assert torch.autograd.gradcheck(
        lambda p, n: make_bound(name)(p, n).loss, (POSITIVE.double().requires_grad_(), NEGATIVE.double().requires_grad_())
    )


def test_jensen_shannon_gradient_by_hand():
    positive = POSITIVE.clone().requires_grad_()
    negative = NEGATIVE.clone().requires_grad_()
    JensenShannonBound()(positive, negative).loss.backward()
    # loss = mean softplus(-T+) + mean softplus(T-): d/dT+ = -sigmoid(-T+) / B, d/dT- = sigmoid(T-) / (B K); B = 2, K = 1
    def sigmoid(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    assert positive.grad.tolist() == pytest.approx([-sigmoid(-2.0) / 2, -sigmoid(-3.0) / 2], rel=1e-6)
    assert negative.grad.flatten().tolist() == pytest.approx([sigmoid(0.0) / 2, sigmoid(1.0) / 2], rel=1e-6)


@pytest.mark.parametrize(
    "positive, negative, message",
    [
        (torch.zeros(4), torch.zeros(4), "shape \\(B, K, \\*L\\)"),
        (torch.zeros(4), torch.zeros(3, 2), "do not line up"),
        (torch.zeros(4, 5), torch.zeros(4, 2, 6), "do not line up"),
        (torch.zeros(4), torch.zeros(4, 0), "at least one negative"),
    ],
)
def test_bad_layouts_are_refused(positive, negative, message):
    with pytest.raises(ValueError, match=message):
        JensenShannonBound()(positive, negative)


def test_unknown_bound_name():
    with pytest.raises(ValueError, match="jsd, infonce, dv, nwj"):
        make_bound("mine")
