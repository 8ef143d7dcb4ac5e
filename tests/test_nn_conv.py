"""fftconv.nn convolution layers: gradients, transform reuse, memory policies, workspaces, validation.

Oracles: central finite differences in float64 (exact up to rounding for a layer that is linear in its input and in
its weights), PyTorch autograd, and the im2col algorithm; transform counts come from ``CountingBackend``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import assert_close
from counting_backend import CountingBackend
from fftconv import NumpyBackend
from fftconv.nn import SGD, Conv1d, Conv2d, Conv3d, CrossEntropyLoss, Flatten, Linear, ReLU, Sequential, Workspace
from fftconv.nn.gradcheck import check_gradients

CONV = {1: Conv1d, 2: Conv2d, 3: Conv3d}

# (input shape, layer arguments): every hyper-parameter away from its default somewhere, in 1, 2 and 3 d.
CASES = [
    ((2, 2, 9), dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1)),
    ((2, 4, 8), dict(in_channels=4, out_channels=2, kernel_size=2, dilation=2, padding="same", groups=2)),
    ((2, 2, 7, 6), dict(in_channels=2, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                        dilation=(1, 2), groups=2)),
    ((1, 3, 5, 5), dict(in_channels=3, out_channels=2, kernel_size=3, padding="same", bias=False)),
    ((1, 2, 4, 4, 4), dict(in_channels=2, out_channels=2, kernel_size=2, stride=2, padding=1, groups=2)),
    ((1, 1, 5, 4, 4), dict(in_channels=1, out_channels=2, kernel_size=(2, 2, 1), dilation=(2, 1, 1),
                           stride=(1, 2, 1))),
]
CASE_IDS = [f"{len(shape) - 2}d-{i}" for i, (shape, _) in enumerate(CASES)]
VARIANTS = [dict(algo="fft", memory="reuse"), dict(algo="fft", memory="recompute"), dict(algo="im2col")]
VARIANT_IDS = ["fft-reuse", "fft-recompute", "im2col"]


def make_layer(shape, arguments, dtype=np.float64, seed=0, **options):
    return CONV[len(shape) - 2](**arguments, dtype=dtype, rng=seed, backend="numpy"
                                if options.get("algo", "fft") == "fft" else None, **options)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("shape, arguments", CASES, ids=CASE_IDS)
def test_backward_matches_finite_differences(shape, arguments, variant, rng):
    layer = make_layer(shape, arguments, workspace=Workspace() if variant.get("memory") == "recompute" else None,
                       **variant)
    # Central differences of a bilinear function are exact up to rounding: ~1e-16 * |L| / eps = 1e-10 here.
    check_gradients(layer, rng.standard_normal(shape), rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", VARIANTS[:2], ids=VARIANT_IDS[:2])
@pytest.mark.parametrize("shape, arguments", CASES, ids=CASE_IDS)
def test_layer_matches_torch_autograd(shape, arguments, variant, dtype, rng):
    torch = pytest.importorskip("torch")
    layer = make_layer(shape, arguments, dtype=dtype, **variant)
    x = rng.standard_normal(shape).astype(dtype)
    x_torch = torch.tensor(x, requires_grad=True)
    weight = torch.tensor(layer.weight, requires_grad=True)
    bias = torch.tensor(layer.bias, requires_grad=True) if layer.bias is not None else None
    convolution = getattr(torch.nn.functional, f"conv{len(shape) - 2}d")
    hyper = {k: v for k, v in arguments.items() if k in ("stride", "padding", "dilation", "groups")}
    y_torch = convolution(x_torch, weight, bias, **hyper)
    grad_output = rng.standard_normal(tuple(y_torch.shape)).astype(dtype)
    y_torch.backward(torch.tensor(grad_output))

    y = layer.forward(x)
    grad_input = layer.backward(grad_output)
    # float64: the project's 1e-10; float32: its 1e-5 cap (these problems have <= 8x8 FFTs and <= 20-term sums).
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert_close(y, y_torch.detach().numpy(), tol, "forward")
    assert_close(grad_input, x_torch.grad.numpy(), tol, "input gradient")
    assert_close(layer.grad_weight, weight.grad.numpy(), tol, "weight gradient")
    if bias is not None:
        assert_close(layer.grad_bias, bias.grad.numpy(), tol, "bias gradient")


@pytest.mark.parametrize("memory", ["reuse", "recompute"])
def test_one_step_transforms_each_map_once(memory, rng):
    """The paper's reuse: S*f inputs, f'*f/g kernels and S*f' output gradients, each transformed exactly once."""
    batch, f, f_out, groups = 3, 4, 6, 2
    counter = CountingBackend(NumpyBackend())
    layer = Conv2d(f, f_out, 3, stride=2, padding=1, groups=groups, backend=counter, memory=memory,
                   workspace=Workspace() if memory == "recompute" else None, dtype=np.float64, rng=0)
    x = rng.standard_normal((batch, f, 9, 9))
    inputs, kernels = batch * f, f_out * f // groups
    y = layer.forward(x)
    assert (counter.forward_maps, counter.inverse_maps) == (inputs + kernels, batch * f_out)
    counter.reset()
    layer.backward(rng.standard_normal(y.shape))
    gradients = batch * f_out
    if memory == "reuse":  # only the output gradient is new; X and W spectra come from forward
        assert counter.forward_maps == gradients
    else:  # the memory-efficient mode pays for transforming x and w again
        assert counter.forward_maps == gradients + inputs + kernels
    assert counter.inverse_maps == batch * f + kernels


def test_reuse_and_recompute_train_identically(rng):
    """Both policies compute the same spectra with the same products: the trained parameters agree bit for bit."""
    x, labels = rng.standard_normal((4, 2, 10, 10)), rng.integers(0, 3, size=4)

    def train(memory):
        workspace = Workspace() if memory == "recompute" else None
        net = Sequential(Conv2d(2, 4, 3, padding=1, memory=memory, workspace=workspace, dtype=np.float64, rng=1),
                         ReLU(), Conv2d(4, 2, 3, stride=2, memory=memory, workspace=workspace, dtype=np.float64,
                                        rng=2), Flatten(), Linear(2 * 4 * 4, 3, dtype=np.float64, rng=3))
        loss, optimizer = CrossEntropyLoss(), SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            optimizer.zero_grad()
            loss.forward(net.forward(x), labels)
            net.backward(loss.backward())
            optimizer.step()
        return [p.copy() for p, _ in net.parameters()]

    for reused, recomputed in zip(train("reuse"), train("recompute")):
        np.testing.assert_array_equal(reused, recomputed)


def test_workspace_is_shared_sized_by_largest_layer_and_allocated_once(rng):
    workspace = Workspace()
    small = Conv2d(2, 3, 3, memory="recompute", workspace=workspace, dtype=np.float64, rng=0)
    large = Conv2d(3, 8, 3, padding=2, memory="recompute", workspace=workspace, dtype=np.float64, rng=1)
    net = Sequential(small, ReLU(), large)
    x = rng.standard_normal((4, 2, 12, 12))
    optimizer = SGD(net.parameters(), lr=0.01)
    addresses, allocations = [], []
    for _ in range(4):
        optimizer.zero_grad()
        y = net.forward(x)
        net.backward(np.ones_like(y))
        optimizer.step()
        addresses.append(workspace.address)
        allocations.append(workspace.allocations)
    # The small layer runs first, then the large one grows the buffer once; after step 1 nothing is allocated.
    assert allocations == [2, 2, 2, 2]
    assert len(set(addresses)) == 1
    plans = [layer._plans.get(shape)[1] for layer, shape in ((small, x.shape), (large, (4, 3, 10, 10)))]
    needs = [Workspace.bytes_needed(plan) for plan in plans]
    assert needs[1] > needs[0]
    assert workspace.nbytes - 64 == max(needs)  # the largest layer's three spectra plus alignment slack
    # The network reports the shared workspace once, on top of what the layers hold.
    assert net.nbytes == small.nbytes + large.nbytes + workspace.nbytes


def test_workspace_buffers_are_the_out_arguments():
    """The spectra a recompute layer uses live inside the workspace buffer (no fresh spectrum arrays)."""
    workspace = Workspace()
    layer = Conv1d(2, 3, 3, memory="recompute", workspace=workspace, dtype=np.float64, rng=0)
    layer.forward(np.zeros((2, 2, 8)))
    plan = next(iter(layer._plans.values()))[1]
    views = workspace.spectra(plan)
    start, end = workspace.address, workspace.address + workspace.nbytes
    for name, view in views.items():
        assert view.shape == plan.spectrum_shapes[name] and view.dtype == plan.complex_dtype
        assert start <= view.ctypes.data < end


def test_nbytes_counts_parameters_gradients_and_kept_spectra(rng):
    x = rng.standard_normal((2, 3, 8, 8))
    reuse = Conv2d(3, 4, 3, dtype=np.float64, rng=0)
    recompute = Conv2d(3, 4, 3, memory="recompute", workspace=Workspace(), dtype=np.float64, rng=0)
    parameters = 2 * (reuse.weight.nbytes + reuse.bias.nbytes)
    assert reuse.nbytes == recompute.nbytes == parameters
    reuse.forward(x)
    recompute.forward(x)
    spectra = next(iter(reuse._plans.values()))[1].spectrum_bytes()
    assert reuse.nbytes == parameters + spectra["input"] + spectra["weight"]
    # keeps copies of its input and weight (backward's operands as at forward), not their spectra
    assert recompute.nbytes == parameters + x.nbytes + reuse.weight.nbytes
    reuse.backward(np.zeros((2, 4, 6, 6)))
    assert reuse.nbytes == parameters  # saved spectra are released by backward
    reuse.eval()
    reuse.forward(x)
    assert reuse.nbytes == parameters  # evaluation keeps nothing


def test_plan_is_cached_per_input_shape(rng):
    layer = Conv2d(1, 2, 3, dtype=np.float64, rng=0)
    for batch in (2, 2, 3):
        layer.forward(rng.standard_normal((batch, 1, 6, 6)))
    assert sorted(layer._plans.keys()) == [(2, 1, 6, 6), (3, 1, 6, 6)]
    state = layer._plans.get((3, 1, 6, 6))
    assert state.geometry.full_output_shape == (3, 2, 4, 4) and state.plan.geometry is state.geometry


@pytest.mark.parametrize("algo", ["fft", "im2col"])
def test_plans_are_kept_for_the_most_recent_input_shapes_only(algo, rng):
    """200 input sizes (variable-size images): the layer keeps its last ``plan_cache_size`` shapes, and every output
    is still right."""
    layer = Conv2d(1, 2, 3, dtype=np.float64, rng=0, algo=algo, backend="numpy" if algo == "fft" else None)
    twin = Conv2d(1, 2, 3, dtype=np.float64, rng=0, algo="direct")
    sizes = range(3, 203)
    for n in sizes:
        x = rng.standard_normal((1, 1, n, 3))
        assert_close(layer.forward(x), twin.forward(x), 1e-12)
    assert len(layer._plans) == layer.plan_cache_size == 8
    assert sorted(layer._plans.keys()) == [(1, 1, n, 3) for n in sizes[-8:]]
    layer.plan_cache_size = 2
    assert sorted(layer._plans.keys()) == [(1, 1, n, 3) for n in sizes[-2:]]
    with pytest.raises(ValueError, match="plan_cache_size must be a positive int, got 0"):
        layer.plan_cache_size = 0


def test_fft_and_im2col_layers_train_to_the_same_parameters(rng):
    """A few SGD steps (momentum, weight decay) of a tiny conv net: FFT and direct GEMM layers agree to 1e-10."""
    x, labels = rng.standard_normal((6, 1, 12, 12)), rng.integers(0, 4, size=6)

    def train(algo):
        net = Sequential(Conv2d(1, 3, 5, padding=2, algo=algo, dtype=np.float64, rng=1), ReLU(),
                         Conv2d(3, 4, 3, stride=2, dilation=1, algo=algo, dtype=np.float64, rng=2), ReLU(),
                         Flatten(), Linear(4 * 5 * 5, 4, dtype=np.float64, rng=3))
        loss, optimizer = CrossEntropyLoss(), SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        for _ in range(5):
            optimizer.zero_grad()
            loss.forward(net.forward(x), labels)
            net.backward(loss.backward())
            optimizer.step()
        return [p.copy() for p, _ in net.parameters()]

    for fft, gemm in zip(train("fft"), train("im2col")):
        assert_close(fft, gemm, 1e-10, "parameter after 5 steps")


# ---------------------------------------------------------------------- construction, validation, repr
def test_default_initialisation_is_pytorchs_fan_in_uniform():
    layer = Conv2d(8, 16, 3, groups=2, dtype=np.float64, rng=0)
    bound = 1 / math.sqrt(8 // 2 * 9)
    for values in (layer.weight, layer.bias):
        assert np.abs(values).max() <= bound
    assert np.abs(layer.weight).max() > 0.95 * bound  # 576 uniform draws reach near the bound
    np.testing.assert_array_equal(layer.weight, Conv2d(8, 16, 3, groups=2, dtype=np.float64, rng=0).weight)
    same_seed_float32 = Conv2d(8, 16, 3, groups=2, rng=np.random.default_rng(0))
    assert same_seed_float32.weight.dtype == np.float32
    np.testing.assert_array_equal(same_seed_float32.weight, layer.weight.astype(np.float32))


def test_repr_shows_non_defaults():
    assert repr(Conv2d(3, 8, 5)) == "Conv2d(3, 8, kernel_size=(5, 5))"
    assert repr(Conv1d(2, 4, 3, padding="same", groups=2, bias=False, algo="im2col", dtype=np.float64)) == (
        "Conv1d(2, 4, kernel_size=(3,), padding='same', groups=2, bias=False, algo='im2col', dtype=float64)")
    assert "memory='recompute'" in repr(Conv3d(1, 1, 1, memory="recompute"))


@pytest.mark.parametrize("arguments, error, match", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), ValueError, "groups=2 must divide"),
    (dict(in_channels=0, out_channels=4, kernel_size=3), ValueError, "in_channels must be a positive int"),
    (dict(in_channels=1, out_channels=1, kernel_size=(3, 3, 3)), ValueError, "kernel_size must be an int or a tuple"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, stride=0), ValueError, "stride must be positive"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, stride=2, padding="same"), ValueError, "requires stride 1"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, algo="fast"), ValueError,
     r"algo='fast' is unknown; valid: \[.*'im2col'.*'auto'\]"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, memory="keep"), ValueError, "memory='keep' is unknown"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, workspace=Workspace()), ValueError, "only used with memory"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, dtype=np.float16), TypeError, "dtype must be float32"),
])
def test_constructor_errors_name_the_argument(arguments, error, match):
    with pytest.raises(error, match=match):
        Conv2d(**arguments)


def test_forward_and_backward_errors_name_the_problem():
    layer = Conv2d(3, 4, 3, dtype=np.float64, rng=0)
    with pytest.raises(TypeError, match="dtype float32 but the layer was built with dtype=float64"):
        layer.forward(np.zeros((1, 3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        layer.forward(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="weight.shape\\[1\\]=3 times groups=1 must equal the 2 channels"):
        layer.forward(np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="kernel of size \\(3, 3\\).*larger than the padded input"):
        layer.forward(np.zeros((1, 3, 2, 8)))
    with pytest.raises(RuntimeError, match="needs the state saved by forward"):
        layer.backward(np.zeros((1, 4, 6, 6)))
    layer.forward(np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="grad_output has shape \\(1, 4, 5, 5\\)"):
        layer.backward(np.zeros((1, 4, 5, 5)))


def test_backward_accumulates_parameter_gradients(rng):
    layer = Conv1d(2, 3, 3, dtype=np.float64, rng=0)
    x, grad_output = rng.standard_normal((2, 2, 7)), rng.standard_normal((2, 3, 5))
    layer.forward(x)
    layer.backward(grad_output)
    once = layer.grad_weight.copy(), layer.grad_bias.copy()
    layer.forward(x)
    layer.backward(grad_output)
    np.testing.assert_allclose(layer.grad_weight, 2 * once[0], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(layer.grad_bias, 2 * once[1], rtol=1e-14)
    layer.zero_grad()
    assert not layer.grad_weight.any() and not layer.grad_bias.any()


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_a_batch_of_zero_samples_trains_as_in_pytorch(variant, rng):
    """Forward gives PyTorch's empty output, backward an empty input gradient and no change to the gradients."""
    torch = pytest.importorskip("torch")
    layer = Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64, rng=0, **variant)
    reference = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    x = np.zeros((0, 3, 9, 9))
    expected = reference(torch.zeros(x.shape, dtype=torch.float64))
    layer.grad_weight[...] = 1.0
    y = layer.forward(x)
    assert y.shape == tuple(expected.shape)
    assert layer.backward(np.zeros(y.shape)).shape == x.shape
    np.testing.assert_array_equal(layer.grad_weight, 1.0)
    np.testing.assert_array_equal(layer.grad_bias, 0.0)


def test_a_network_takes_a_batch_of_zero_samples(rng):
    net = Sequential(Conv2d(1, 2, 3, rng=0), ReLU(), Flatten(), Linear(2 * 4 * 4, 3, rng=0))
    y = net.forward(np.zeros((0, 1, 6, 6), np.float32))
    assert y.shape == (0, 3)
    assert net.backward(np.zeros((0, 3), np.float32)).shape == (0, 1, 6, 6)
