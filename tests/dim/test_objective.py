"""The DIM objective: its terms built from a configuration, the views and maps they score, and what it refuses."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from dim.config import TrainConfig
from dim.core.images import normalize_images
from dim.core.shapes import make_shapes
from dim.mi import (
    AllPairsNegatives,
    CrossLocationNegatives,
    InfoNCEBound,
    JensenShannonBound,
    LocalSeparableCritic,
    MIEstimator,
    ShuffleNegatives,
)
from dim.models import Encoder
from dim.objective import BOUNDS, DeepInfoMax, build_objective

# The state dicts of the presets' models (3x32 images, critic_hidden 16) as checkpoints hold them: the count and
# the sha256 of their "name (shape)" lines. Saved runs must keep loading, so these never change. A run saves its
# resolved settings, so a run of an earlier `best` (with the global term, alpha 0.5) is rebuilt as alpha=0.5.
PRESET_STATE_DIGESTS = {
    ("best", "local", 0.5): (46, "f361f844f17f6908fcc43dfd33dd98e548e725db0499ffeb58b38f3050c4afe4"),
    ("best", "local", None): (34, "58fbf7d22830748fd6f874636bbbccafdcd8634c0f03f7603431cdd5710b0956"),
    ("paper", "local", None): (34, "242fa72ef64d84e39fb179dd360021e284285635dbed44c2490d7dd36c2eebe6"),
    ("su-jianlin", "local", None): (36, "8346991f3badab2536c9e2bfc5cd1533e8779d8e09f9f3677e69ebc2a5263abf"),
    ("best", "local+conv", 0.5): (58, "56879b07c45d909a27cc469f41516057cc58e7d02f633bc971d17d5a06260feb"),
}


def objective(**settings) -> DeepInfoMax:
    """``build_objective`` for 3x32 images around a fresh encoder, from ``TrainConfig(**settings).resolved()``."""
    config = TrainConfig(**{"critic_hidden": 16, **settings}).resolved()
    return build_objective(Encoder(z_dim=config.z_dim, stochastic=config.prior == "kl"), config)


@pytest.mark.parametrize(("preset", "local_maps", "alpha"), list(PRESET_STATE_DIGESTS))
def test_the_presets_checkpoint_layouts_are_unchanged(preset, local_maps, alpha):
    model = objective(preset=preset, local_maps=local_maps, alpha=alpha)
    state = model.state_dict()
    prefixes = {name.split(".critic.")[0] if ".critic." in name else name.split(".")[0] for name in state}
    expected = {"encoder", "local_mi"} | ({"global_mi"} if model.alpha > 0 else set())
    assert prefixes == expected | ({"conv_local_mi"} if local_maps == "local+conv" else set())
    lines = "\n".join(f"{name} {tuple(tensor.shape)}" for name, tensor in state.items())
    assert (len(state), hashlib.sha256(lines.encode()).hexdigest()) == PRESET_STATE_DIGESTS[preset, local_maps, alpha]


def test_the_builder_composes_each_term_from_the_configs_names():
    best = objective(preset="best")  # the local term alone: infonce, locations, separable critics, kl prior
    assert best.global_mi is None and best.conv_local_mi is None
    assert (best.alpha, best.beta, best.gamma, best.prior_kind) == (0.0, 2.0, 0.01, "kl")
    model = objective(preset="best", alpha=0.5)  # and the global term of the same form
    for term in (model.global_mi, model.local_mi):
        assert isinstance(term, MIEstimator) and isinstance(term.negatives, CrossLocationNegatives)
        assert isinstance(term.bound, InfoNCEBound)
    assert isinstance(model.local_mi.critic, LocalSeparableCritic)
    assert model.local_mi.critic is not model.global_mi.critic
    assert model.global_mi.critic.temperature is None
    su = objective(preset="su-jianlin")
    assert isinstance(su.local_mi.negatives, ShuffleNegatives) and isinstance(su.local_mi.bound, JensenShannonBound)
    paper = objective(preset="paper")
    assert paper.global_mi is None and paper.prior_kind == "adversarial" and not paper.encoder.stochastic
    assert objective(preset="best", critic_temperature=0.1).local_mi.critic.temperature == 0.1


@pytest.mark.parametrize(
    "settings",
    [
        {"preset": "su-jianlin"},
        {"preset": "su-jianlin", "bound": "infonce", "negatives": "locations", "critic": "separable"},
        {"preset": "su-jianlin", "bound": "dv", "negatives": "all", "critic": "separable", "alpha": 0.0},
        *({"preset": "su-jianlin", "bound": bound, "negatives": "locations", "critic": "separable"}
          for bound in ("jsd", "dv", "nwj")),
    ],
)
def test_objective_terms(settings):
    torch.manual_seed(0)
    model = objective(**settings)
    output = model(torch.randn(6, 3, 32, 32))
    loss = model.loss(output)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert output.local_term is not None and output.local_term.mi.requires_grad is False
    assert (output.global_term is None) == (settings.get("alpha") == 0.0)
    loss.backward()
    assert model.encoder.local[0][0].weight.grad is not None


def test_the_local_term_across_locations_is_the_estimators_on_the_encoders_map():
    torch.manual_seed(0)
    model = objective(preset="best", prior="none").eval()
    images = torch.randn(5, 3, 32, 32)
    encoding = model.encoder(images)
    positive, negative = model.local_mi.negatives(model.local_mi.critic, encoding.local, encoding.z)
    assert positive.shape == (5, 64) and negative.shape == (5, 4 * 64, 1)  # 8x8 positions, shared negatives
    expected = InfoNCEBound()(positive, negative)
    assert torch.allclose(model(images).local_term.mi, expected.mi, atol=1e-6)


def test_the_loss_falls_on_shapes():
    torch.manual_seed(0)
    images = normalize_images(make_shapes(32, seed=1)[0])  # (32, 3, 32, 32)
    model = objective(preset="su-jianlin", z_dim=16, critic_hidden=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = model.loss(model(images))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < sum(losses[:3])


def test_two_views_score_each_views_features_against_the_other_views_code():
    torch.manual_seed(0)
    model = objective(preset="su-jianlin", bound="infonce", negatives="all", critic="separable", prior="none").eval()
    views = torch.randn(8, 3, 32, 32)  # two views of 4 images: rows 0-3 and 4-7
    output = model(views, views=2)
    encoding = model.encoder(views)  # eval mode: each row's encoding does not depend on the others
    for term, estimator, features in [
        (output.local_term, model.local_mi, encoding.local),
        (output.global_term, model.global_mi, encoding.conv.flatten(1)),
    ]:
        first = estimator(features[:4], encoding.z[4:])  # view a's features, view b's code
        second = estimator(features[4:], encoding.z[:4])
        assert torch.allclose(term.loss, (first.loss + second.loss) / 2, atol=1e-5)
        assert torch.allclose(term.mi, (first.mi + second.mi) / 2, atol=1e-5)
    assert not torch.allclose(output.local_term.mi, model(views).local_term.mi)  # one view of 8 images differs
    with pytest.raises(ValueError, match="views"):
        model(views, views=3)


def test_multi_scale_local_term_averages_the_terms_of_both_maps():
    torch.manual_seed(0)
    model = objective(preset="best", prior="none", local_maps="local+conv").eval()
    images = torch.randn(5, 3, 32, 32)
    output = model(images)
    encoding = model.encoder(images)
    local = model.local_mi(encoding.local, encoding.z)  # 8x8 positions of C(x)
    conv = model.conv_local_mi(encoding.conv, encoding.z)  # 4x4 positions of the last conv map, own critic
    assert model.conv_local_mi.critic is not model.local_mi.critic
    assert torch.allclose(output.local_term.loss, (local.loss + conv.loss) / 2, atol=1e-5)
    assert torch.allclose(output.local_term.mi, (local.mi + conv.mi) / 2, atol=1e-5)
    model.loss(output).backward()
    assert model.conv_local_mi.critic.x_projection.shortcut.weight.grad is not None


@pytest.mark.parametrize("bound", BOUNDS)
def test_every_bound_takes_negatives_across_locations(bound):
    assert TrainConfig(bound=bound, negatives="locations").resolved().negatives == "locations"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bound": "infonce", "negatives": "shuffle"}, "capped at log 2; use --negatives all or locations"),
        ({"negatives": "pairs"}, "unknown negatives 'pairs'; choose one of shuffle, all, locations"),
        ({"local_maps": "conv"}, "local_maps.*local\\+conv"),
        ({"alpha": 1.0, "beta": 0.0, "local_maps": "local+conv"}, "beta=0 turns off; set beta > 0"),
        ({"alpha": 0.0, "beta": 0.0}, "alpha \\+ beta > 0"),
        ({"preset": "su-jianlin", "critic_temperature": 0.1}, "critic_temperature.*separable critic"),
    ],
)
def test_the_config_refuses_objectives_that_are_wrong_or_do_nothing(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).resolved()


def test_deep_infomax_refuses_arguments_that_do_not_fit_together():
    def term() -> MIEstimator:
        return MIEstimator(LocalSeparableCritic(128, 64, hidden_dim=8), AllPairsNegatives(), InfoNCEBound())

    deterministic = Encoder(stochastic=False)
    with pytest.raises(ValueError, match="stochastic"):
        DeepInfoMax(deterministic, None, term(), "kl", 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="stochastic"):
        DeepInfoMax(Encoder(), None, term(), "none", 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="unknown prior 'gauss'"):
        DeepInfoMax(deterministic, None, term(), "gauss", 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        DeepInfoMax(deterministic, None, term(), "none", 0.0, 1.0, -0.1)
    with pytest.raises(ValueError, match="alpha=0.5 weights the term global_mi, which is None"):
        DeepInfoMax(deterministic, None, term(), "none", 0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="beta=0 leaves local_mi out of the loss"):
        DeepInfoMax(deterministic, None, term(), "none", 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="needs an MI term"):
        DeepInfoMax(deterministic, None, None, "none", 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="conv_local_mi joins the local term, which is off"):
        DeepInfoMax(deterministic, term(), None, "none", 1.0, 0.0, 0.0, conv_local_mi=term())


def test_the_objective_does_not_import_the_models_at_run_time():
    # dim.models.build_model imports build_objective: the other way round would be a cycle.
    code = "import sys, dim.objective; print('dim.models' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.parametrize("preset", ["best", "su-jianlin"])
def test_a_bf16_step_stays_finite_on_a_hand_made_batch(preset):
    """Mixed precision: the encoder in bf16 under autocast, the critics' products and the bounds in fp32.

    The batch is the hard case for bf16 scores: saturated black/white checkerboards and flat images, whose
    codes (and so their scores) are nearly equal, so the terms live on small differences of large scores.
    """
    from dim.models import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig(preset=preset, critic_hidden=16).resolved(), 3, 32)
    board = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1  # (32, 32) in {-1, 1}
    images = torch.stack([board.expand(3, 32, 32), -board.expand(3, 32, 32), torch.ones(3, 32, 32),
                          -torch.ones(3, 32, 32)] * 2)  # (8, 3, 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(images)
            loss = model.loss(output)
        assert output.encoding.local.dtype == torch.bfloat16  # the encoder did run in bf16
        terms = [term for term in (output.global_term, output.local_term) if term is not None]
        assert all(term.loss.dtype == term.mi.dtype == torch.float32 for term in terms)
        assert torch.isfinite(loss) and all(torch.isfinite(term.mi) for term in terms)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
