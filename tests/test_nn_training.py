"""Softmax cross-entropy, SGD, and whole training runs against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from fftconv.nn import SGD, Conv2d, CrossEntropyLoss, Flatten, Linear, MaxPool2d, ReLU, Sequential


def cross_entropy_explicit(logits, target):
    """The definition, in float64, one sample at a time: -log(exp(z_t) / sum_k exp(z_k))."""
    return np.mean([-np.log(np.exp(z[t]) / np.exp(z).sum()) for z, t in zip(logits, target)])


def test_cross_entropy_value_and_finite_difference_gradient(rng):
    logits, target = rng.standard_normal((5, 4)), rng.integers(0, 4, size=5)
    criterion = CrossEntropyLoss()
    loss = criterion.forward(logits, target)
    assert abs(loss - cross_entropy_explicit(logits, target)) < 1e-14
    grad = criterion.backward()
    eps, numeric = 1e-6, np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        shifted = logits.copy()
        shifted[index] += eps
        plus = CrossEntropyLoss().forward(shifted, target)
        shifted[index] -= 2 * eps
        numeric[index] = (plus - CrossEntropyLoss().forward(shifted, target)) / (2 * eps)
    # Truncation error eps^2 * |d3L| ~ 1e-12 plus rounding 1e-16 / eps ~ 1e-10.
    np.testing.assert_allclose(grad, numeric, atol=1e-9)


def test_cross_entropy_is_stable_for_large_logits():
    criterion = CrossEntropyLoss()
    loss = criterion.forward(np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]]), np.array([0, 2]))
    assert np.isfinite(loss) and abs(loss - 400.0) < 1e-12  # second sample: logsumexp = 800, minus z_t = 0
    assert np.isfinite(criterion.backward()).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    logits, target = (rng.standard_normal((6, 5)) * 3).astype(dtype), rng.integers(0, 5, size=6)
    logits_torch = torch.tensor(logits, requires_grad=True)
    loss_torch = torch.nn.functional.cross_entropy(logits_torch, torch.tensor(target))
    loss_torch.backward()
    criterion = CrossEntropyLoss()
    tol = 1e-14 if dtype == np.float64 else 1e-6
    assert abs(criterion.forward(logits, target) - loss_torch.item()) <= tol * abs(loss_torch.item())
    grad = criterion.backward()
    assert grad.dtype == dtype
    assert_close(grad, logits_torch.grad.numpy(), tol, "logit gradient")


def test_cross_entropy_rejects_bad_targets():
    criterion = CrossEntropyLoss()
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        criterion.forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integer array of shape \\(2,\\)"):
        criterion.forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="needs forward"):
        criterion.backward()


@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(momentum=0.9, weight_decay=0.01),
                                     dict(momentum=0.5, dampening=0.3, weight_decay=0.1),
                                     dict(momentum=0.9, nesterov=True)])
def test_sgd_matches_torch_optim(options, rng):
    torch = pytest.importorskip("torch")
    start = rng.standard_normal((3, 4))
    gradients = rng.standard_normal((5, 3, 4))
    p, g = start.copy(), np.zeros_like(start)
    optimizer = SGD([(p, g)], lr=0.1, **options)
    p_torch = torch.tensor(start, requires_grad=True)
    optimizer_torch = torch.optim.SGD([p_torch], lr=0.1, **options)
    for gradient in gradients:
        g[...] = gradient
        optimizer.step()
        p_torch.grad = torch.tensor(gradient)
        optimizer_torch.step()
        np.testing.assert_allclose(p, p_torch.detach().numpy(), rtol=1e-15, atol=1e-15)


def test_sgd_validates_arguments():
    p = np.zeros(3)
    with pytest.raises(ValueError, match="lr must be non-negative"):
        SGD([(p, p.copy())], lr=-1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD([(p, p.copy())], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="params\\[0\\] must be a \\(parameter, gradient\\) pair"):
        SGD([(p, np.zeros(2))], lr=0.1)


@pytest.mark.parametrize("algo", ["fft", "im2col"])
def test_training_steps_match_torch(algo, rng):
    """Three SGD steps of a small LeNet-like net, every parameter compared with the same net in PyTorch."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x, labels = rng.standard_normal((4, 1, 12, 12)), rng.integers(0, 3, size=4)
    net = Sequential(Conv2d(1, 3, 3, padding=1, algo=algo, dtype=np.float64, rng=1), ReLU(), MaxPool2d(2),
                     Conv2d(3, 4, 3, algo=algo, dtype=np.float64, rng=2), ReLU(), MaxPool2d(2), Flatten(),
                     Linear(4 * 2 * 2, 3, dtype=np.float64, rng=3))
    reference = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3),
                              nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3)).double()
    torch_parameters = [p for module in reference for p in module.parameters()]
    with torch.no_grad():
        for p_torch, (p, _) in zip(torch_parameters, net.parameters()):
            p_torch.copy_(torch.tensor(p))
    options = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)
    optimizer, optimizer_torch = SGD(net.parameters(), **options), torch.optim.SGD(torch_parameters, **options)
    criterion = CrossEntropyLoss()
    for _ in range(3):
        optimizer.zero_grad()
        loss = criterion.forward(net.forward(x), labels)
        net.backward(criterion.backward())
        optimizer.step()
        optimizer_torch.zero_grad()
        loss_torch = nn.functional.cross_entropy(reference(torch.tensor(x)), torch.tensor(labels))
        loss_torch.backward()
        optimizer_torch.step()
        assert abs(loss - loss_torch.item()) < 1e-12
    for (p, _), p_torch in zip(net.parameters(), torch_parameters):
        assert_close(p, p_torch.detach().numpy(), 1e-10, "parameter after 3 steps")
