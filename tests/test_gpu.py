"""The device path on CUDA: DIM's and InfoGAN's training steps, feature extraction, fused Adam, kNN search.

Every test here is marked ``gpu`` and skipped where CUDA is not available, so
the default suite (two CPU cores, no GPU) only collects them. On a GPU machine
``python -m pytest -q -m gpu tests/test_gpu.py`` runs them; so does
``benchmarks/gpu_check.py`` (part ``env-tests``), before it times anything.

Each test checks one piece of what the GPU recipe relies on, against the fp32
(or CPU) computation where there is one to compare with: bf16 autocast and
channels-last in DIM's step, ``torch.compile`` of the step, a whole
``dim.train`` run, InfoGAN's step with both extra terms, feature extraction,
fused Adam and the faiss-free nearest-neighbour search.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dim.config import TrainConfig
from dim.core import probes
from dim.core.device import adam
from dim.core.features import FeatureExtractor
from dim.core.images import normalize_images
from dim.models import Encoder, FeatureHead
from dim.objective import DeepInfoMax, build_objective

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)"),
]
CUDA = torch.device("cuda")


def dim_model(arch: str, seed: int = 0) -> DeepInfoMax:
    """The objective of the best CPU recipe (local infoNCE across locations, separable critics, KL prior)
    around an ``arch`` encoder for 32x32 RGB images, on the CPU."""
    torch.manual_seed(seed)
    encoder = Encoder(arch, 3, 32, 64, stochastic=True)
    config = TrainConfig(bound="infonce", negatives="locations", critic="separable", prior="kl", alpha=0.5, beta=1.5,
                         gamma=0.01, critic_hidden=256)
    return build_objective(encoder, config.resolved())


def loss_and_gradient(model: DeepInfoMax, images: torch.Tensor, bf16: bool) -> tuple[float, torch.Tensor]:
    """The loss of one step as ``dim.train`` computes it (bf16: autocast and channels-last), and the flat gradient."""
    model.zero_grad(set_to_none=True)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)  # the same reparameterisation noise in both runs
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        loss = model.loss(model(images))
    loss.backward()
    gradient = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return loss.item(), gradient


def uint8_images(count: int, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("arch", ["dcgan", "resnet18"])
def test_dim_step_in_bf16_and_channels_last_matches_fp32(monkeypatch, arch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # a true fp32 reference
    reference = dim_model(arch).to(CUDA)
    fast = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    images = normalize_images(uint8_images(64).to(CUDA))
    loss32, gradient32 = loss_and_gradient(reference, images, bf16=False)
    loss16, gradient16 = loss_and_gradient(fast, images, bf16=True)
    assert math.isfinite(loss16) and bool(gradient16.isfinite().all())
    # The local infoNCE is a cross-entropy over 64 * 64 candidates (ln 4096 = 8.3 nats); bf16 keeps ~3 digits.
    assert loss16 == pytest.approx(loss32, abs=0.1)
    # The gradient's direction is what training uses. Under CPU bf16 autocast its cosine to fp32's is
    # about 0.99 (dcgan) and 0.96 (resnet18) at initialisation; a broken path (overflow, a wrong layout) is far off.
    assert F.cosine_similarity(gradient16, gradient32, dim=0).item() > 0.9


def test_compiled_dim_step_matches_the_eager_one():
    model = dim_model("dcgan").to(CUDA, memory_format=torch.channels_last)
    compiled = torch.compile(model)
    images = normalize_images(uint8_images(64).to(CUDA))
    eager_loss, eager_gradient = loss_and_gradient(model, images, bf16=True)
    compiled_loss, compiled_gradient = loss_and_gradient(compiled, images, bf16=True)
    assert compiled_loss == pytest.approx(eager_loss, abs=0.05)
    assert F.cosine_similarity(compiled_gradient, eager_gradient, dim=0).item() > 0.99


def test_dim_training_runs_on_cuda_and_scores_knn(tmp_path):
    from dim.train import Trainer

    config = TrainConfig(dataset="shapes", arch="resnet18", batch_size=64, max_steps=4, compile=False,
                         device="cuda", out=str(tmp_path / "run"))
    trainer = Trainer(config, progress=False)
    try:
        assert trainer.train_images.device.type == "cuda"
        assert trainer.optimizer.defaults["fused"] is True
        result = trainer.run()
    finally:
        trainer.close()
    assert result.step == 4
    assert math.isfinite(result.metrics["loss"])
    assert 0.0 <= result.metrics["knn_top1"] <= 1.0  # the full test split, searched with faiss or torch
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_infogan_step_with_both_terms_runs_on_cuda(tmp_path):
    from infogan.config import TrainConfig as InfoGANConfig
    from infogan.train import Trainer

    config = InfoGANConfig(dataset="shapes", image_size=28, channels=1, out=str(tmp_path / "infogan"), device="cuda",
                           batch_size=32, iterations=3, lambda_invariance=1.0, lambda_iic=1.0)
    trainer = Trainer(config, progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for _ in range(3):
        values = trainer.train_step()
    trainer.close()
    assert values.device.type == "cuda"
    assert len(values) == len(trainer.metric_names)
    assert bool(values.isfinite().all())
    assert all(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()) if p.requires_grad)


@pytest.mark.parametrize("arch", ["dcgan", "resnet18"])
def test_feature_extraction_on_cuda_equals_the_cpu(arch):
    encoder = Encoder(arch, 3, 32, 64).eval()
    cpu = FeatureExtractor(FeatureHead(encoder, "z"), 32, 3, 64, "dim:z").eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    images = uint8_images(600)  # more than one batch of 512
    expected = probes.extract_features(cpu, images)
    found = probes.extract_features(gpu, images.to(CUDA))  # bf16 autocast on CUDA (FeatureHead)
    assert found.device.type == "cpu" and found.shape == expected.shape == (600, 64)
    assert F.cosine_similarity(found, expected, dim=1).min().item() > 0.99
    assert (found - expected).abs().max().item() < 0.05 * expected.abs().max().item()


def test_fused_adam_on_cuda_matches_the_plain_loop():
    torch.manual_seed(0)
    params = [torch.randn(300, 7, device=CUDA, requires_grad=True), torch.randn(11, device=CUDA, requires_grad=True)]
    plain_params = [p.detach().clone().requires_grad_() for p in params]
    fused = adam(params, CUDA, lr=1e-2)
    plain = torch.optim.Adam(plain_params, lr=1e-2, foreach=False)
    assert fused.defaults["fused"] is True
    for step in range(3):
        for group in (params, plain_params):
            loss = sum((p.sin() * (step + 1)).sum() for p in group)
            loss.backward()
        fused.step(), plain.step()
        fused.zero_grad(), plain.zero_grad()
    for p, q in zip(params, plain_params):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_knn_search_without_faiss_runs_on_cuda_and_agrees_with_the_cpu(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    memory, queries = torch.randn(5000, 32, generator=generator), torch.randn(1500, 32, generator=generator)
    cosine = F.normalize(queries, dim=1) @ F.normalize(memory, dim=1).T  # (Q, N) on the CPU
    expected = cosine.topk(20, dim=1)
    monkeypatch.setattr(probes, "faiss", None)
    similarities, indices = probes.nearest_neighbours(memory, queries, k=20)  # on CUDA: it is available
    torch.testing.assert_close(similarities, expected.values, rtol=0, atol=1e-5)
    # Neighbours with similarities within rounding of each other may swap; all others must agree.
    assert (indices == expected.indices).float().mean().item() > 0.999
