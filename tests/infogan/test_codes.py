"""The latent space: sizes, sampling, G's input layout, Q's output split and traversal grids."""

from __future__ import annotations

import pytest
import torch

from infogan.codes import LatentSpec


def test_paper_preset_has_74_inputs():
    spec = LatentSpec()
    assert spec.input_dim == 62 + 10 + 2
    assert spec.code_names == ["c1", "c2", "c3"]
    assert spec.q_output_dim(learn_sigma=False) == 12
    assert spec.q_output_dim(learn_sigma=True) == 14


def test_sample_shapes_and_ranges():
    latent = LatentSpec(categorical=(10, 3)).sample(500)
    assert latent.noise.shape == (500, 62) and latent.noise.abs().max() <= 1
    assert latent.categorical.shape == (500, 2) and latent.categorical.dtype == torch.int64
    assert latent.categorical[:, 0].max() == 9 and latent.categorical[:, 1].max() == 2
    assert latent.continuous.shape == (500, 2) and latent.continuous.abs().max() <= 1


def test_generator_input_is_noise_one_hot_continuous():
    spec = LatentSpec(noise_dim=3, categorical=(4,), continuous=1)
    latent = spec.sample(5)
    x = spec.generator_input(latent)  # (5, 3 + 4 + 1)
    assert x.shape == (5, 8)
    assert torch.equal(x[:, :3], latent.noise)
    assert torch.equal(x[:, 3:7].argmax(1), latent.categorical[:, 0])
    assert torch.equal(x[:, 3:7].sum(1), torch.ones(5))
    assert torch.equal(x[:, 7:], latent.continuous)


def test_split_q_output():
    spec = LatentSpec(categorical=(10, 3), continuous=2)
    q = spec.split_q_output(torch.arange(17.0).repeat(4, 1), learn_sigma=True)
    assert [t.shape for t in q.logits] == [(4, 10), (4, 3)]
    assert q.mean.tolist()[0] == [13.0, 14.0] and q.log_sigma.tolist()[0] == [15.0, 16.0]
    assert spec.split_q_output(torch.zeros(4, 15), learn_sigma=False).log_sigma is None
    with pytest.raises(ValueError, match=r"\(B, 15\)"):
        spec.split_q_output(torch.zeros(4, 17), learn_sigma=False)


def test_traversal_of_the_categorical_code():
    latent = LatentSpec().traversal("c1", columns=10)
    assert latent.noise.shape == (100, 62)
    assert torch.equal(latent.categorical[:, 0], torch.arange(10).repeat_interleave(10))  # one row per category
    assert torch.equal(latent.noise[:10], latent.noise[10:20])  # the same noise in every row
    assert torch.count_nonzero(latent.continuous) == 0


def test_traversal_of_a_continuous_code():
    latent = LatentSpec().traversal("c3", columns=5, value_range=2.0)
    assert latent.noise.shape == (50, 62)
    assert latent.continuous[:5, 1].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert torch.count_nonzero(latent.continuous[:, 0]) == 0
    assert torch.equal(latent.noise[0], latent.noise[4])  # noise fixed along a row
    assert torch.equal(latent.categorical[::5, 0], torch.arange(10))


def test_traversal_is_reproducible_and_checks_the_name():
    spec = LatentSpec()
    assert torch.equal(spec.traversal("c2", seed=3).noise, spec.traversal("c2", seed=3).noise)
    with pytest.raises(ValueError, match="c1, c2, c3"):
        spec.traversal("c4")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"noise": "cauchy"}, "noise must be"), ({"categorical": (1,)}, "at least 2"),
     ({"categorical": (), "continuous": 0}, "at least one code")],
)
def test_invalid_specs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LatentSpec(**kwargs)
