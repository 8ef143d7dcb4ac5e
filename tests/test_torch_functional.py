"""fftconv.torch's functions: gradients by finite differences (gradcheck), values against torch.nn.functional,
the memory policies, gradients of gradients, tensors shared with numpy, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import reduction_lengths, tolerance

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fftconv.torch")
F = torch.nn.functional
from fftconv.torch import _passes  # noqa: E402

ALGOS = ("fft", "im2col", "direct", "auto")
# torch warns that it copies the input for 'same' with even kernels; that is its performance note, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# (input shape, weight shape, options): tiny, but every hyper-parameter and 1-3 spatial dimensions.
CONV_CASES = {
    "1d-stride-padding-bias": ((2, 2, 7), (3, 2, 3), dict(stride=2, padding=1), True),
    "1d-same-even-kernel-dilation-groups": ((1, 4, 6), (2, 2, 4), dict(padding="same", dilation=2, groups=2), False),
    "2d-tuples-dilation-groups-bias": ((1, 2, 5, 6), (2, 1, 2, 3), dict(stride=(2, 1), padding=(1, 0),
                                                                         dilation=(1, 2), groups=2), True),
    "2d-same": ((1, 2, 5, 5), (2, 2, 3, 3), dict(padding="same"), True),
    "3d-padding-bias": ((1, 2, 4, 3, 3), (2, 2, 2, 2, 2), dict(padding=1), True),
}
TRANSPOSED_CASES = {
    "1d-stride-output-padding-bias": ((1, 2, 4), (2, 3, 3), dict(stride=2, padding=1, output_padding=1), True),
    "2d-groups-dilation": ((1, 4, 3, 3), (4, 1, 2, 2), dict(stride=(1, 2), groups=2, dilation=(2, 1)), True),
    "2d-output-padding-from-dilation": ((1, 2, 3, 3), (2, 2, 2, 2), dict(dilation=3, output_padding=2), False),
    "3d-stride": ((1, 2, 2, 2, 2), (2, 2, 2, 2, 2), dict(stride=2, padding=1), True),
}


def arrays(input_shape, weight_shape, bias, channels, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(input_shape, dtype=dtype, generator=generator, requires_grad=True)
    w = torch.randn(weight_shape, dtype=dtype, generator=generator, requires_grad=True)
    b = torch.randn(channels, dtype=dtype, generator=generator, requires_grad=True) if bias else None
    return x, w, b


def conv_function(ndim, transposed=False):
    name = f"conv_transpose{ndim}d" if transposed else f"conv{ndim}d"
    return getattr(ft, name), getattr(F, name)


# ---------------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
def test_conv_gradcheck(case, algo):
    input_shape, weight_shape, options, bias = CONV_CASES[case]
    ours, _ = conv_function(len(input_shape) - 2)
    inputs = arrays(input_shape, weight_shape, bias, weight_shape[0])
    inputs = tuple(t for t in inputs if t is not None)

    def function(*tensors):
        return ours(*tensors, **options, algo=algo)

    assert torch.autograd.gradcheck(function, inputs, fast_mode=True)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=list(TRANSPOSED_CASES))
def test_conv_transpose_gradcheck(case, algo):
    input_shape, weight_shape, options, bias = TRANSPOSED_CASES[case]
    ours, _ = conv_function(len(input_shape) - 2, transposed=True)
    inputs = arrays(input_shape, weight_shape, bias, weight_shape[1] * options.get("groups", 1))
    inputs = tuple(t for t in inputs if t is not None)

    def function(*tensors):
        return ours(*tensors, **options, algo=algo)

    assert torch.autograd.gradcheck(function, inputs, fast_mode=True)


@pytest.mark.parametrize("memory", ["reuse", "recompute"])
def test_full_gradcheck_of_every_jacobian_entry(memory):
    """One case checked entry by entry (not only along random directions), for both memory policies."""
    x, w, b = arrays((1, 2, 5, 4), (2, 2, 3, 2), True, 2)
    assert torch.autograd.gradcheck(lambda *t: ft.conv2d(*t, stride=(2, 1), padding=1, algo="fft", memory=memory),
                                    (x, w, b))
    xt, wt, bt = arrays((1, 2, 3, 3), (2, 3, 2, 2), True, 3)
    assert torch.autograd.gradcheck(
        lambda *t: ft.conv_transpose2d(*t, stride=2, output_padding=1, algo="fft", memory=memory), (xt, wt, bt))


@pytest.mark.parametrize("algo", ALGOS)
def test_double_backward_with_recompute(algo):
    x, w, b = arrays((1, 2, 5, 5), (2, 1, 3, 3), True, 2)
    assert torch.autograd.gradgradcheck(
        lambda *t: ft.conv2d(*t, padding=1, groups=2, algo=algo, memory="recompute"), (x, w, b))
    xt, wt, _ = arrays((1, 2, 3, 3), (2, 2, 2, 2), False, 2)
    assert torch.autograd.gradgradcheck(
        lambda *t: ft.conv_transpose2d(*t, stride=2, algo=algo, memory="recompute"), (xt, wt))


def test_double_backward_through_kept_spectra_names_the_limit():
    x, w, _ = arrays((1, 2, 5, 5), (2, 2, 3, 3), False, 2)
    y = ft.conv2d(x, w, algo="fft", memory="reuse")
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)  # first derivative: fine
    with pytest.raises(RuntimeError, match="double backward.*memory='reuse'.*memory='recompute'"):
        gx.sum().backward()


def test_spatial_algorithms_keep_no_spectra_so_double_backward_works_with_reuse():
    x, w, _ = arrays((1, 2, 5, 5), (2, 2, 3, 3), False, 2)
    assert torch.autograd.gradgradcheck(lambda *t: ft.conv2d(*t, algo="im2col", memory="reuse"), (x, w))


# ---------------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
def test_conv_matches_torch(case, dtype):
    input_shape, weight_shape, options, bias = CONV_CASES[case]
    ours, reference = conv_function(len(input_shape) - 2)
    x, w, b = arrays(input_shape, weight_shape, bias, weight_shape[0], dtype, seed=1)
    y_ref = reference(x, w, b, **options)
    gy = torch.randn_like(y_ref)
    expected = (y_ref, *torch.autograd.grad(y_ref, (x, w), gy))
    reductions = reduction_lengths(input_shape, weight_shape, y_ref.shape, options.get("groups", 1))
    points = int(np.prod([2 * (n + 4) for n in input_shape[2:]]))  # above any FFT size chosen here
    for algo in ALGOS:
        y = ours(x, w, b, **options, algo=algo)
        actual = (y, *torch.autograd.grad(y, (x, w), gy))
        for name, a, e in zip(("forward", "input", "weight"), actual, expected):
            tol = tolerance(np.dtype(str(dtype).removeprefix("torch.")), points, reductions[name])
            error = (a - e).abs().max().item() / e.abs().max().item()
            assert a.dtype == dtype and error <= tol, f"{algo} {name}: {error:.2e} > {tol:.2e}"


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=list(TRANSPOSED_CASES))
def test_conv_transpose_matches_torch(case):
    input_shape, weight_shape, options, bias = TRANSPOSED_CASES[case]
    ours, reference = conv_function(len(input_shape) - 2, transposed=True)
    x, w, b = arrays(input_shape, weight_shape, bias, weight_shape[1] * options.get("groups", 1), seed=2)
    y_ref = reference(x, w, b, **options)
    gy = torch.randn_like(y_ref)
    expected = (y_ref, *torch.autograd.grad(y_ref, (x, w), gy))
    for algo in ALGOS:
        y = ours(x, w, b, **options, algo=algo)
        actual = (y, *torch.autograd.grad(y, (x, w), gy))
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10 * e.abs().max().item())


def test_unbatched_input_as_in_pytorch():
    x, w, b = arrays((2, 9, 9), (3, 2, 3, 3), True, 3)
    torch.testing.assert_close(ft.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1))
    torch.testing.assert_close(ft.conv_transpose2d(x, w.transpose(0, 1), None, stride=2),
                               F.conv_transpose2d(x, w.transpose(0, 1), None, stride=2))


def test_only_the_needed_gradients_are_computed(monkeypatch):
    """A frozen weight, or an input that needs no gradient (a network's first layer), skips its pass."""
    computed = []
    spatial, spectral = _passes.spatial_pass, _passes.spectral_pass
    monkeypatch.setattr(_passes, "spatial_pass", lambda s, p, *a: computed.append(p) or spatial(s, p, *a))
    monkeypatch.setattr(_passes, "spectral_pass", lambda s, p, *a: computed.append(p) or spectral(s, p, *a))
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    for algo in ("fft", "im2col"):
        computed.clear()
        ft.conv2d(x, w, algo=algo).sum().backward()
        assert computed == ["forward", "weight"], algo
        computed.clear()
        ft.conv2d(x.requires_grad_(), w.detach(), algo=algo).sum().backward()
        assert computed == ["forward", "input"], algo
        x = x.detach()


# ---------------------------------------------------------------------------------------------------- memory policy
def count_transforms(monkeypatch) -> list[str]:
    roles: list[str] = []
    transform = _passes.transform
    monkeypatch.setattr(_passes, "transform", lambda spec, role, *a: roles.append(role) or transform(spec, role, *a))
    return roles


@pytest.mark.parametrize("transposed", [False, True])
def test_reuse_transforms_each_operand_once_per_step(monkeypatch, transposed):
    """The paper's reuse: forward transforms both operands, backward only the output gradient."""
    roles = count_transforms(monkeypatch)
    x, w, b = arrays((2, 3, 8, 8), (3, 3, 3, 3), True, 3)
    conv = ft.conv_transpose2d if transposed else ft.conv2d
    conv(x, w, b, algo="fft", memory="reuse").square().sum().backward()
    assert sorted(roles) == ["grad_output", "input", "weight"]
    roles.clear()
    conv(x, w, b, algo="fft", memory="recompute").square().sum().backward()
    assert len(roles) == 5 and roles.count("weight") == 2


def test_reuse_keeps_spectra_only_while_a_gradient_needs_them(monkeypatch):
    roles = count_transforms(monkeypatch)
    x, w, _ = arrays((2, 3, 8, 8), (3, 3, 3, 3), False, 3)
    with torch.no_grad():
        outputs = torch.ops.fftconv.conv_pass(x, w, None, "forward", [2, 3, 8, 8], [3, 3, 3, 3], [1, 1], [0, 0], "",
                                              [1, 1], 1, "fft", None, None, None, [False, False])
    assert [o.numel() for o in outputs[1:]] == [0, 0]
    y = ft.conv2d(x, w.detach(), algo="fft")  # only the input's gradient: only the weight spectrum is read again
    roles.clear()
    y.sum().backward()
    assert roles == ["grad_output"]


def test_reuse_and_recompute_give_the_same_gradients():
    x, w, b = arrays((2, 3, 9, 9), (4, 3, 4, 4), True, 4)
    results = []
    for memory in ("reuse", "recompute"):
        y = ft.conv2d(x, w, b, stride=2, padding=1, algo="fft", memory=memory)
        results.append((y, *torch.autograd.grad(y.square().sum(), (x, w, b))))
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------------------- tensors
def test_contiguous_float_tensors_cross_to_numpy_without_copies(monkeypatch):
    seen = []
    run_pass = _passes.run_pass
    monkeypatch.setattr(_passes, "run_pass", lambda spec, name, a, b, *r: seen.append((a, b)) or
                        run_pass(spec, name, a, b, *r))
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    y = ft.conv2d(x, w, algo="im2col")
    (a, b), = seen
    assert a.ctypes.data == x.data_ptr() and b.ctypes.data == w.data_ptr()
    assert y.is_contiguous() and y.dtype == torch.float32


@pytest.mark.parametrize("layout", ["transposed", "strided-slice", "channels-last", "expanded"])
@pytest.mark.parametrize("algo", ["fft", "im2col"])
def test_non_contiguous_tensors(layout, algo):
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(2, 3, 10, 12, dtype=torch.float64, generator=generator)
    x = {"transposed": base.transpose(2, 3), "strided-slice": base[:, :, ::2, 1::2],
         "channels-last": base.to(memory_format=torch.channels_last),
         "expanded": base[:1].expand(3, -1, -1, -1)}[layout].requires_grad_()
    w = torch.randn(3, 4, 3, 3, dtype=torch.float64, generator=generator).transpose(0, 1).requires_grad_()
    assert not x.is_contiguous() and not w.is_contiguous()
    y, y_ref = ft.conv2d(x, w, padding=1, algo=algo), F.conv2d(x, w, padding=1)
    gy = torch.randn(y_ref.shape, dtype=torch.float64, generator=generator).transpose(2, 3).contiguous().transpose(2, 3)
    for a, e in zip((y, *torch.autograd.grad(y, (x, w), gy)), (y_ref, *torch.autograd.grad(y_ref, (x, w), gy))):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- errors
def test_unsupported_dtypes_name_what_is_supported():
    w = torch.randn(2, 2, 3, 3)
    for dtype in (torch.float16, torch.bfloat16, torch.int64, torch.complex64):
        with pytest.raises(TypeError, match=r"input has dtype .*supports torch.float32 and torch.float64"):
            ft.conv2d(torch.zeros(1, 2, 5, 5, dtype=dtype), w)
    with pytest.raises(TypeError, match="weight has dtype torch.float64 but input has dtype torch.float32"):
        ft.conv2d(torch.zeros(1, 2, 5, 5), w.double())
    with pytest.raises(TypeError, match="bias has dtype torch.float16"):
        ft.conv_transpose2d(torch.zeros(1, 2, 5, 5), w, torch.zeros(2, dtype=torch.float16))


def test_other_devices_and_layouts_are_refused():
    with pytest.raises(ValueError, match="on device 'meta'.*CPU only.*.cpu()"):
        ft.conv2d(torch.zeros(1, 2, 5, 5, device="meta"), torch.zeros(2, 2, 3, 3, device="meta"))
    with pytest.raises(ValueError, match="weight is on device 'meta'"):
        ft.conv1d(torch.zeros(1, 2, 5), torch.zeros(2, 2, 3, device="meta"))
    with pytest.raises(ValueError, match="layout torch.sparse_coo.*to_dense"):
        ft.conv1d(torch.zeros(1, 2, 5).to_sparse(), torch.zeros(2, 2, 3))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        ft.conv1d(np.zeros((1, 2, 5)), torch.zeros(2, 2, 3))


def test_bad_arguments_name_the_argument():
    x, w = torch.zeros(1, 2, 5, 5), torch.zeros(2, 2, 3, 3)
    with pytest.raises(ValueError, match=r"algo='fftt' is unknown; valid: \['auto', 'direct', 'fft', 'im2col', 'tiled', 'winograd'\]"):
        ft.conv2d(x, w, algo="fftt")
    with pytest.raises(ValueError, match="memory='keep' is unknown"):
        ft.conv2d(x, w, memory="keep")
    with pytest.raises(ValueError, match="backend"):
        ft.conv2d(x, w, backend="cufft")
    with pytest.raises(ValueError, match="fft_size"):
        ft.conv2d(x, w, fft_size="huge")
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        ft.conv2d(torch.zeros(5, 5), w)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        ft.conv2d(x, w, groups=3)
    with pytest.raises(ValueError, match="kernel of size"):
        ft.conv2d(torch.zeros(1, 2, 2, 2), w)
    with pytest.raises(ValueError, match="bias must have shape"):
        ft.conv2d(x, w, torch.zeros(3))
    with pytest.raises(ValueError, match="no 'same' or 'valid' for transposed"):
        ft.conv_transpose2d(x, w, padding="same")
    with pytest.raises(ValueError, match="output_padding=.* must be non-negative and smaller"):
        ft.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="input has 3 channels but weight.shape"):
        ft.conv_transpose2d(torch.zeros(1, 3, 5, 5), w)
