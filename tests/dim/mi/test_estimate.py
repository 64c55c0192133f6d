"""estimate_mi and its baselines: values against closed forms and hand computations, refusals of bad input."""

import math
import warnings

import numpy as np
import pytest
import torch

from dim.mi import canonical_correlations, estimate_mi, gaussian_mi, ksg_mi, rank_gaussianize
from dim.mi.estimate import _student_t_quantile, build_critic

RHO = 0.8
TRUE_MI = -2 * 0.5 * math.log(1 - RHO**2)  # two correlated pairs: 1.022 nats
FAST = {"folds": 3, "max_steps": 200, "eval_every": 50, "patience": 4, "baselines": False}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread, also for the module's shared estimate: small critics run faster without parallel
    regions, and the thread count changes float sums in the last digits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def correlated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(0, I_2), y_i = rho x_i + sqrt(1 - rho^2) e_i: I(x; y) = -log(1 - rho^2)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    return x, RHO * x + math.sqrt(1 - RHO**2) * rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def gaussian_estimate():
    x, y = correlated(2000)
    return x, y, estimate_mi(x, y, **FAST)


def test_estimate_is_near_the_analytic_mi(gaussian_estimate):
    *_, result = gaussian_estimate
    assert result.nats == pytest.approx(TRUE_MI, abs=0.15)
    assert result.bits == pytest.approx(result.nats / math.log(2))
    assert result.num_samples == 2000 and len(result.folds) == 3
    assert sum(fold.num_test for fold in result.folds) == 2000  # every sample held out once


def test_the_interval_is_the_t_interval_of_the_folds_and_covers(gaussian_estimate):
    *_, result = gaussian_estimate
    folds = torch.tensor([fold.test_mi for fold in result.folds], dtype=torch.float64)
    sizes = torch.tensor([fold.num_test for fold in result.folds], dtype=torch.float64)
    assert result.nats == pytest.approx(((folds * sizes).sum() / sizes.sum()).item())
    half = 4.302653 * folds.std().item() / math.sqrt(3)  # t quantile, 2 degrees of freedom, 97.5 %
    assert result.interval == pytest.approx((result.nats - half, result.nats + half), rel=0.01)
    assert result.interval[0] - 0.05 <= TRUE_MI <= result.interval[1] + 0.05


def test_monotone_maps_of_each_coordinate_leave_the_estimate_unchanged():
    """Ranks are all the estimator keeps of each column, so x**3 and exp(y) give the same estimate."""
    x, y = correlated(600)
    options = {**FAST, "max_steps": 60, "eval_every": 20}
    plain, warped = estimate_mi(x, y, **options), estimate_mi(x**3, np.exp(y), **options)
    assert warped.nats == pytest.approx(plain.nats, abs=1e-6)
    assert warped.interval == pytest.approx(plain.interval, abs=1e-6)
    # Only standardised, the warped margins cost the same critic a large part of the MI.
    assert estimate_mi(x**3, np.exp(y), rank_gaussian=False, **options).nats < plain.nats - 0.1


def test_the_curves_record_training_and_validation():
    x, y = correlated(400)
    result = estimate_mi(x, y, folds=3, max_steps=40, eval_every=10, patience=100, baselines=False)
    for fold in result.folds:
        assert fold.steps == [10, 20, 30, 40]
        assert len(fold.train_mi) == len(fold.validation_mi) == 4
        assert fold.best_step in fold.steps
        assert fold.validation_mi[fold.steps.index(fold.best_step)] == max(fold.validation_mi)


def test_rank_gaussianize_gives_normal_scores_of_mid_ranks():
    values = torch.tensor([[3.0], [1.0], [2.0], [2.0]])
    # mid-ranks 4, 1, 2.5, 2.5 -> Phi^-1(r / 5), then standardised
    scores = torch.special.ndtri(torch.tensor([4.0, 1.0, 2.5, 2.5], dtype=torch.float64) / 5)
    expected = (scores - scores.mean()) / scores.std()
    assert torch.allclose(rank_gaussianize(values)[:, 0], expected)
    assert torch.equal(rank_gaussianize(values), rank_gaussianize(values.exp()))  # monotone: same ranks


def test_separable_critics_score_scaled_dot_products():
    """Raw dot products are divided by sqrt(E); cosine scores (a temperature) are left as they are."""
    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    scaled = build_critic("separable", 3, 2, {"hidden_dim": 8, "embed_dim": 16})
    assert torch.allclose(scaled(x, y), scaled.critic(x, y) / 4)
    index = torch.randint(6, (6, 3))
    assert torch.allclose(scaled.pairs(x, y, index), scaled.critic.pairs(x, y, index) / 4)
    cosine = build_critic("separable", 3, 2, {"hidden_dim": 8, "embed_dim": 16, "temperature": 0.5})
    assert cosine(x, y).abs().max() <= 2 + 1e-6  # |cos| / T


def test_student_t_quantile():
    for dof, exact in [(2, 4.302653), (4, 2.776445), (9, 2.262157)]:
        assert _student_t_quantile(0.975, dof) == pytest.approx(exact, rel=0.01)


def test_gaussian_baseline_against_the_closed_form():
    """Canonical correlations 0.8 and 0.5: I = -1/2 (log(1 - 0.64) + log(1 - 0.25)) = 0.6547 nats."""
    rng = np.random.default_rng(1)
    n = 20_000
    x = rng.standard_normal((n, 2))
    y = np.column_stack([0.8 * x[:, 0] + 0.6 * rng.standard_normal(n),
                         0.5 * x[:, 1] + math.sqrt(0.75) * rng.standard_normal(n), rng.standard_normal(n)])
    truth = -0.5 * (math.log(1 - 0.64) + math.log(1 - 0.25))
    assert canonical_correlations(x, y).numpy() == pytest.approx([0.8, 0.5], abs=0.01)
    assert gaussian_mi(x, y).item() == pytest.approx(truth, abs=0.01)
    # The same as 1/2 (log det C_xx + log det C_yy - log det C) of the sample covariance.
    c = np.cov(np.column_stack([x, y]).T)
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    by_hand = 0.5 * (logdet(c[:2, :2]) + logdet(c[2:, 2:]) - logdet(c))
    assert gaussian_mi(x, y).item() == pytest.approx(by_hand, rel=1e-9)


def test_the_gaussian_bias_correction_removes_the_bias_of_independent_samples():
    torch.manual_seed(0)
    plain, corrected = [], []
    for _ in range(10):
        x, y = torch.randn(500, 10, dtype=torch.float64), torch.randn(500, 10, dtype=torch.float64)
        plain.append(gaussian_mi(x, y).item())
        corrected.append(gaussian_mi(x, y, bias_correction=True).item())
    assert np.mean(plain) == pytest.approx(10 * 10 / (2 * 500), rel=0.2)  # about D_x D_y / (2 N)
    assert abs(np.mean(corrected)) < 0.01


def ksg_by_hand(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """KSG estimator 1 with explicit loops (Kraskov et al. 2004, eq. 8)."""
    from scipy.special import digamma

    n = len(x)
    total = 0.0
    for i in range(n):
        dx = np.abs(x - x[i]).max(axis=1)
        dy = np.abs(y - y[i]).max(axis=1)
        joint = np.maximum(dx, dy)
        joint[i] = np.inf
        eps = np.sort(joint)[k - 1]
        total += digamma((dx < eps).sum()) + digamma((dy < eps).sum())  # (count - self) + 1
    return digamma(k) + digamma(n) - total / n


def test_ksg_matches_a_hand_computation():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((40, 1))
    y += x[:, :1]
    assert ksg_mi(x, y, k=3, chunk_size=7).item() == pytest.approx(ksg_by_hand(x, y, 3), rel=1e-9)


def test_ksg_is_near_the_truth_on_a_gaussian_pair():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(3000)
    y = 0.75 * x + math.sqrt(1 - 0.75**2) * rng.standard_normal(3000)
    assert ksg_mi(x, y).item() == pytest.approx(-0.5 * math.log(1 - 0.75**2), abs=0.04)


def test_baselines_are_reported():
    x, y = correlated(600)
    result = estimate_mi(x, y, folds=3, max_steps=20, eval_every=10)
    assert set(result.baselines) == {"gaussian", "ksg"}
    assert result.baselines["gaussian"] == pytest.approx(TRUE_MI, abs=0.15)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((100, 2)), np.zeros((99, 2)), "same samples, one per row; got 100 rows in x and 99 in y"),
        (np.ones((40, 1)), np.ones((40, 1)), "too few samples: 40 for 5 folds"),
        (np.r_[np.random.randn(199), np.nan], np.random.randn(200), "x has 1 row.* NaN or infinite.*row 199"),
        (np.random.randn(200, 2), np.c_[np.random.randn(200), np.ones(200)], r"column\(s\) \[1\] are constant"),
        (np.zeros((200, 2, 2)), np.zeros((200, 1)), r"x must be \(N,\) or \(N, D\)"),
    ],
)
def test_refusals_say_what_to_do(x, y, message):
    with pytest.raises(ValueError, match=message):
        estimate_mi(x, y)


@pytest.mark.parametrize(
    ("option", "message"),
    [({"critic": "mlp"}, "unknown critic 'mlp'; choose one of concat, separable"),
     ({"bound": "kl"}, "unknown bound 'kl'"), ({"folds": 2}, "folds must be >= 3")],
)
def test_bad_options_are_refused(option, message):
    with pytest.raises(ValueError, match=message):
        estimate_mi(*correlated(200), **option)


def test_estimating_on_training_samples_warns_and_says_so():
    with pytest.warns(UserWarning, match="biased upwards"):
        result = estimate_mi(*correlated(200), folds=3, max_steps=5, eval_every=5, held_out=False, baselines=False)
    assert "estimated on the critic's own training pairs" in result.diagnostics[0]


def test_the_progress_bar_runs_to_its_total_and_the_callers_rng_is_untouched():
    class Bar:
        def __init__(self):
            self.total, self.done, self.status = None, 0, ""

        def reset(self, total=None):
            self.total = total

        def update(self, n=1):
            self.done += n

        def set_postfix_str(self, s="", refresh=True):
            self.status = s

    bar = Bar()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_mi(*correlated(200), folds=3, max_steps=30, eval_every=10, patience=1, baselines=False, progress=bar)
    assert bar.total == bar.done == 90  # early-stopped folds still fill their share
    assert bar.status.startswith("fold 3/3, validation")
    assert torch.equal(torch.random.get_rng_state(), state)


def test_to_dict_is_json_ready(gaussian_estimate):
    import json

    *_, result = gaussian_estimate
    data = json.loads(json.dumps(result.to_dict()))
    assert data["nats"] == pytest.approx(result.nats) and data["bits"] == pytest.approx(result.bits)
    assert len(data["folds"]) == 3 and data["settings"]["critic"] == "concat"
