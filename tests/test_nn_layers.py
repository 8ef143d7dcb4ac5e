"""Linear, LocallyConnected2d, MaxPool, ReLU, Flatten, Sequential: finite differences, PyTorch, explicit sums."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import assert_close
from fftconv.nn import (Conv2d, Flatten, Linear, LocallyConnected2d, MaxPool1d, MaxPool2d, MaxPool3d, ReLU,
                        Sequential)
from fftconv.nn.gradcheck import check_gradients

F64 = dict(dtype=np.float64)


def distinct_normal(rng, shape):
    """Random values with gaps far above the finite-difference step, so max pooling has no near-ties."""
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) * 0.1 + 0.01


# ---------------------------------------------------------------------- finite differences for every layer
@pytest.mark.parametrize("make_layer, shape", [
    (lambda: Linear(5, 3, **F64, rng=0), (4, 5)),
    (lambda: Linear(5, 3, bias=False, **F64, rng=0), (2, 5)),
    (lambda: LocallyConnected2d(2, 3, (5, 4), 3, padding=1, **F64, rng=0), (2, 2, 5, 4)),
    (lambda: LocallyConnected2d(2, 2, (6, 5), (2, 3), stride=(2, 1), bias=False, **F64, rng=0), (1, 2, 6, 5)),
    (lambda: MaxPool1d(3, stride=2), (2, 2, 9)),
    (lambda: MaxPool2d(2), (2, 3, 4, 6)),
    (lambda: MaxPool2d((3, 2), stride=(1, 2)), (1, 2, 5, 5)),  # overlapping windows
    (lambda: MaxPool3d(2, stride=1), (1, 1, 3, 4, 3)),
    (lambda: ReLU(), (3, 7)),
    (lambda: Flatten(), (2, 3, 2, 2)),
    (lambda: Sequential(Conv2d(1, 2, 3, padding=1, **F64, rng=0), ReLU(), MaxPool2d(2), Flatten(),
                        Linear(2 * 3 * 3, 4, **F64, rng=1)), (2, 1, 6, 6)),
], ids=["linear", "linear-nobias", "local", "local-strided", "pool1d", "pool2d", "pool2d-overlap", "pool3d", "relu",
        "flatten", "sequential"])
def test_backward_matches_finite_differences(make_layer, shape, rng):
    # ReLU and max pooling are piecewise linear: with gaps >= 0.1 between values and eps = 1e-6 no kink is crossed.
    check_gradients(make_layer(), distinct_normal(rng, shape) * rng.choice([-1, 1], size=shape), rtol=1e-7)


def test_gradient_check_catches_a_wrong_backward(rng):
    """The oracle can fail: a backward off by 0.1 % is rejected."""
    layer = Linear(3, 2, **F64, rng=0)
    correct = layer.backward
    layer.backward = lambda grad_output: correct(grad_output) * 1.001
    with pytest.raises(AssertionError, match="gradient of the input"):
        check_gradients(layer, rng.standard_normal((2, 3)))


# ---------------------------------------------------------------------- PyTorch autograd
def torch_gradients(function, x, parameters, grad_output_seed=1):
    """Run ``function(x_torch, *params_torch)`` under autograd; return (y, grad_output, dx, [dparams])."""
    torch = pytest.importorskip("torch")
    x_torch = torch.tensor(x, requires_grad=True)
    params = [torch.tensor(p, requires_grad=True) for p in parameters]
    y = function(torch, x_torch, *params)
    grad_output = np.random.default_rng(grad_output_seed).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(grad_output))
    return y.detach().numpy(), grad_output, x_torch.grad.numpy(), [p.grad.numpy() for p in params]


def compare_with_torch(layer, x, function):
    y_torch, grad_output, dx_torch, dparams_torch = torch_gradients(function, x, [p for p, _ in layer.parameters()])
    layer.zero_grad()
    assert_close(layer.forward(x), y_torch, 1e-12, "forward")
    assert_close(layer.backward(grad_output), dx_torch, 1e-12, "input gradient")
    for (_, grad), expected in zip(layer.parameters(), dparams_torch):
        assert_close(grad, expected, 1e-12, "parameter gradient")


def test_linear_matches_torch(rng):
    compare_with_torch(Linear(6, 4, **F64, rng=0), rng.standard_normal((5, 6)),
                       lambda torch, x, w, b: torch.nn.functional.linear(x, w, b))


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, "same"), ((2, 3), (2, 1), 0), (2, 2, 1)])
def test_locally_connected_matches_torch_unfold(kernel, stride, padding, rng):
    """Oracle: torch's unfold gives each position's patch; an einsum applies that position's own filters."""
    layer = LocallyConnected2d(2, 3, (6, 5), kernel, stride, padding, **F64, rng=0)
    kh, kw = layer.kernel_size
    torch_padding = (kh // 2, kw // 2) if padding == "same" else padding

    def local(torch, x, w, b):
        patches = torch.nn.functional.unfold(x, (kh, kw), padding=torch_padding, stride=stride)  # (S, f*k, P)
        filters = w.reshape(-1, w.shape[2], w.shape[3] * kh * kw)  # (P, f', f*k)
        y = torch.einsum("scp,poc->sop", patches, filters)
        return y.reshape(x.shape[0], w.shape[2], *w.shape[:2]) + b

    compare_with_torch(layer, rng.standard_normal((3, 2, 6, 5)), local)


def test_locally_connected_forward_matches_explicit_sums(rng):
    """Each output position uses its own filters: y[s,o,i,j] = b[o,i,j] + sum w[i,j,o,c,a,b] x[s,c,i*st+a,j*st+b]."""
    layer = LocallyConnected2d(2, 3, (5, 6), 2, stride=2, **F64, rng=0)
    x = rng.standard_normal((2, 2, 5, 6))
    expected = np.zeros((2, 3, 2, 3))
    for s, o, i, j in itertools.product(range(2), range(3), range(2), range(3)):
        patch = x[s, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        expected[s, o, i, j] = np.sum(layer.weight[i, j, o] * patch) + layer.bias[o, i, j]
    assert_close(layer.forward(x), expected, 1e-14, "forward")


@pytest.mark.parametrize("ndim, kernel, stride", [(1, 3, 2), (2, 2, 2), (2, (3, 2), (1, 2)), (3, 2, 1)])
def test_max_pool_matches_torch(ndim, kernel, stride, rng):
    pool = {1: MaxPool1d, 2: MaxPool2d, 3: MaxPool3d}[ndim](kernel, stride)
    shape = (2, 3, *(7, 6, 5)[:ndim])
    compare_with_torch(pool, rng.standard_normal(shape),
                       lambda torch, x: getattr(torch.nn.functional, f"max_pool{ndim}d")(x, kernel, stride))


def test_max_pool_ties_route_to_the_first_maximum():
    """Constant input, overlapping 2x2 windows: each window's gradient goes to its top-left (first) element."""
    pool = MaxPool2d(2, stride=1)
    y = pool.forward(np.zeros((1, 1, 3, 3)))
    grad_output = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    assert y.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(pool.backward(grad_output)[0, 0], expected)
    # A tie between a later and an earlier element of one window: the earlier (row-major) one wins.
    pool = MaxPool2d(2)
    pool.forward(np.array([[[[0.0, 5.0], [5.0, 5.0]]]]))
    np.testing.assert_array_equal(pool.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_max_pool_ties_agree_with_torch():
    torch = pytest.importorskip("torch")
    x = np.round(np.random.default_rng(3).standard_normal((2, 2, 6, 6)))  # many ties among small integers
    pool = MaxPool2d(3, stride=1)
    grad_output = np.random.default_rng(4).standard_normal(pool.forward(x).shape)
    x_torch = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(x_torch, 3, 1).backward(torch.tensor(grad_output))
    np.testing.assert_allclose(pool.backward(grad_output), x_torch.grad.numpy(), rtol=1e-14, atol=1e-14)


def test_max_pool_propagates_nan():
    pool = MaxPool1d(2)
    y = pool.forward(np.array([[[1.0, np.nan, 4.0, 3.0]]]))
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 4.0
    np.testing.assert_array_equal(pool.backward(np.ones((1, 1, 2)))[0, 0], [0.0, 1.0, 1.0, 0.0])


def test_relu_matches_torch_and_is_zero_at_zero(rng):
    x = rng.standard_normal((3, 4))
    x[0, :2] = 0.0
    compare_with_torch(ReLU(), x, lambda torch, x: torch.relu(x))


# ---------------------------------------------------------------------- containers, state and errors
def test_sequential_parameters_zero_grad_and_nbytes(rng):
    conv, linear = Conv2d(1, 2, 3, **F64, rng=0), Linear(8, 3, **F64, rng=1)
    net = Sequential(conv, ReLU(), MaxPool2d(2), Flatten(), linear)
    assert [p is q for (p, _), q in zip(net.parameters(), (conv.weight, conv.bias, linear.weight, linear.bias))] \
        == [True] * 4
    parameter_bytes = 2 * sum(p.nbytes for p, _ in net.parameters())
    assert net.nbytes == parameter_bytes
    y = net.forward(rng.standard_normal((1, 1, 6, 6)))
    assert net.nbytes > parameter_bytes  # spectra, ReLU mask, pooling argmax, Linear's input
    net.backward(np.ones_like(y))
    assert net.nbytes == parameter_bytes
    assert all(g.any() for _, g in net.parameters())
    net.zero_grad()
    assert not any(g.any() for _, g in net.parameters())
    assert len(net) == 5 and net[4] is linear and "(4): Linear(8, 3, dtype=float64)" in repr(net)


def test_parameter_counts_come_from_the_shapes_the_layers_allocate():
    for cls, args, kwargs in [(Linear, (7, 5), {}), (Conv2d, (4, 6, 3), dict(groups=2)),
                              (LocallyConnected2d, (2, 3, (6, 5), 3), dict(padding="same"))]:
        layer = cls(*args, **kwargs)
        assert cls.parameter_count(*args, **kwargs) == sum(p.size for p, _ in layer.parameters())
    assert Linear.parameter_count(40_000, 40_000, bias=False) == 1_600_000_000
    assert LocallyConnected2d.parameter_count(1, 1, (200, 200), 10, padding="same", bias=False) == 4_000_000
    assert Conv2d.parameter_count(1, 100, 10, bias=False) == 10_000


@pytest.mark.parametrize("call, error, match", [
    (lambda: Linear(3, 2).forward(np.zeros((2, 4), dtype=np.float32)), ValueError, "input has 4 features"),
    (lambda: Linear(3, 2).forward(np.zeros((2, 3))), TypeError, "dtype float64 but the layer was built"),
    (lambda: Linear(3, 0), ValueError, "out_features must be a positive int"),
    (lambda: LocallyConnected2d(1, 1, (5, 5), 3).forward(np.zeros((1, 1, 6, 5), dtype=np.float32)), ValueError,
     "built for one input size"),
    (lambda: LocallyConnected2d(1, 1, (5, 5), 7), ValueError, "larger than the padded input"),
    (lambda: MaxPool2d(3).forward(np.zeros((1, 1, 2, 5))), ValueError, "kernel_size \\(3, 3\\) is larger"),
    (lambda: MaxPool2d(0), ValueError, "kernel_size must be positive"),
    (lambda: ReLU().backward(np.zeros(3)), RuntimeError, "needs the state saved by forward"),
    (lambda: Sequential(Linear(2, 2), "relu"), TypeError, "layer 1 must be a fftconv.nn.Module"),
])
def test_errors_name_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("make, shape", [
    (lambda: LocallyConnected2d(2, 3, 6, 3, rng=0), (0, 2, 6, 6)),
    (lambda: Linear(5, 3, rng=0), (0, 5)),
    (lambda: MaxPool2d(2), (0, 2, 6, 6)),
    (ReLU, (0, 2, 6, 6)),
    (Flatten, (0, 2, 6, 6)),
], ids=["locally-connected", "linear", "maxpool", "relu", "flatten"])
def test_a_batch_of_zero_samples_passes_through_every_layer(make, shape):
    """As in PyTorch: empty outputs and input gradients, parameter gradients unchanged."""
    layer = make()
    y = layer.forward(np.zeros(shape, np.float32))
    assert y.shape[0] == 0
    assert layer.backward(np.zeros(y.shape, np.float32)).shape == shape
    assert all(not grad.any() for _, grad in layer.parameters())
