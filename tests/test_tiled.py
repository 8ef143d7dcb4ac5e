"""The tiled FFT algorithm (overlap-save / overlap-add) against the float64 oracle, PyTorch, adjoint identities and
the untiled FFT algorithm; its counts (fftconv.costs.TiledWork) against what the passes actually do."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fftconv
import oracle
from conftest import DTYPES, assert_close, fft_points_bound, reduction_lengths, tolerance
from counting_backend import CountingBackend
from fftconv import tiled
from fftconv._tiling import Tiling
from fftconv.algorithms import ALGORITHMS
from fftconv.costs import TiledWork
from fftconv.geometry import ConvGeometry
from fftconv.sizes import fft_shape_for
from fftconv.spectral import SpectralPlan


@dataclass(frozen=True)
class Case:
    """Array shapes plus the hyper-parameters passed verbatim to ConvGeometry and the oracle."""

    x_shape: tuple
    w_shape: tuple
    options: dict = field(default_factory=dict)
    bias: bool = False

    @property
    def geometry(self) -> ConvGeometry:
        return ConvGeometry.from_shapes(self.x_shape, self.w_shape, **self.options)

    def arrays(self, rng, dtype):
        """Input, weight, bias and output gradient drawn in float64 and rounded once to ``dtype``."""
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = rng.standard_normal(self.w_shape).astype(dtype)
        b = rng.standard_normal(self.w_shape[0]).astype(dtype) if self.bias else None
        gy = rng.standard_normal(self.geometry.full_output_shape).astype(dtype)
        return x, w, b, gy


# Each exercises what tiling must get right at tile edges: padding before and after (asymmetric for "same" with
# even kernels), strides (tiles aligned to them; an unread tail; a kernel shorter than the stride, which leaves
# gaps between tiles), dilated halos, groups, bias, 1-3 dimensions.
CASES = {
    "1d-plain": Case((2, 3, 13), (4, 3, 3)),
    "1d-stride2-pad1-bias": Case((2, 3, 14), (4, 3, 3), dict(stride=2, padding=1), bias=True),
    "1d-stride3-gaps-unread-tail": Case((2, 2, 14), (3, 2, 2), dict(stride=3)),
    "1d-same-even-dilated": Case((1, 2, 12), (3, 2, 4), dict(padding="same", dilation=2)),
    "1d-groups3-bias": Case((2, 6, 11), (9, 2, 3), dict(groups=3), bias=True),
    "2d-same-even-bias": Case((2, 3, 9, 10), (4, 3, 2, 4), dict(padding="same"), bias=True),
    "2d-stride-dil-groups-bias": Case((2, 6, 11, 9), (3, 2, 3, 2),
                                      dict(stride=(2, 1), padding=(2, 0), dilation=(2, 1), groups=3), bias=True),
    "2d-depthwise": Case((2, 3, 8, 9), (3, 1, 3, 3), dict(padding=1, groups=3)),
    "3d-same-groups-bias": Case((1, 4, 6, 5, 4), (2, 2, 2, 3, 2), dict(padding="same", groups=2), bias=True),
    "3d-strided-padded-dilated": Case((2, 2, 7, 6, 7), (3, 2, 2, 2, 3),
                                      dict(stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1))),
}


def uneven_tile(m: int) -> int:
    """A tile that does not divide ``m`` where one exists (the last tile is then partial)."""
    return next((t for t in range(m // 2 + 1, m) if m % t), 1)


TILES = {
    "ones": lambda g: (1,) * g.ndim,
    "uneven": lambda g: tuple(uneven_tile(m) for m in g.output_shape),
    "half": lambda g: tuple(-(-m // 2) for m in g.output_shape),
    "whole": lambda g: g.output_shape,
}


def run_passes(x, w, b, gy, g, **kwargs):
    return {"forward": tiled.forward(x, w, b, g, **kwargs), "input": tiled.grad_input(gy, w, g, **kwargs),
            "weight": tiled.grad_weight(x, gy, g, **kwargs)}


def oracle_passes(case: Case, x, w, b, gy):
    return {"forward": oracle.forward(x, w, b, **case.options),
            "input": oracle.grad_input(x.shape, w, gy, **case.options),
            "weight": oracle.grad_weight(x, w.shape, gy, **case.options)}


def pass_tolerance(g: ConvGeometry, pass_name: str, dtype) -> float:
    """The suite's round-off model, as test_functional applies it to the untiled FFT algorithm.

    Each tile is an untiled convolution of the tile geometry, whose FFT size is at most the largest any policy
    picks for the whole padded input (a tile reads at most that much): ``fft_points_bound``. An overlap-added input
    gradient sums the same ``K`` products as the untiled one, only split over up to ``2^ndim`` tiles, and the weight
    gradient's extra batch entries (zeros past the map) add no round-off. Measured over 15 seeds of every case and
    tile here: at most 0.65 of this tolerance in float64 (the untiled FFT algorithm reaches 0.65 on the same draw,
    a 1-d weight gradient) and 0.08 in float32.
    """
    points = fft_points_bound(g.full_input_shape, [b + a for b, a in zip(g.padding_before, g.padding_after)])
    reduction = reduction_lengths(g.full_input_shape, g.full_weight_shape, g.full_output_shape, g.groups)[pass_name]
    return tolerance(dtype, points, reduction)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("tile_name", list(TILES))
@pytest.mark.parametrize("case_id", list(CASES))
def test_every_pass_matches_oracle(case_id, tile_name, dtype, rng):
    case = CASES[case_id]
    g = case.geometry
    tile = TILES[tile_name](g)
    x, w, b, gy = case.arrays(rng, dtype)
    before = [a.copy() for a in (x, w, gy)]
    results = run_passes(x, w, b, gy, g, tile=tile)
    for pass_name, expected in oracle_passes(case, x, w, b, gy).items():
        result = results[pass_name]
        assert result.dtype == np.dtype(dtype) and result.flags.c_contiguous
        assert_close(result, expected, pass_tolerance(g, pass_name, dtype), f"{pass_name} tile={tile}")
    for original, array in zip(before, (x, w, gy)):
        np.testing.assert_array_equal(array, original, err_msg="an input array was modified in place")


def test_tile_sizes_are_what_they_claim(rng):
    """The uneven tiles really leave a partial last tile, and "ones" really cuts every axis into many tiles."""
    for case in CASES.values():
        g = case.geometry
        if max(g.output_shape) > 2:
            assert any(m % t for m, t in zip(g.output_shape, TILES["uneven"](g)))
        assert Tiling(g, TILES["ones"](g)).counts == g.output_shape


@pytest.mark.parametrize("case_id", list(CASES))
def test_single_tile_equals_untiled_fft(case_id, rng):
    """One tile over the whole output is the untiled FFT algorithm on the explicitly padded input."""
    case = CASES[case_id]
    g = case.geometry
    x, w, b, gy = case.arrays(rng, np.float64)
    fft = ALGORITHMS["fft"]
    untiled = {"forward": fft.forward(x, w, b, g), "input": fft.grad_input(gy, w, g),
               "weight": fft.grad_weight(x, gy, g)}
    for pass_name, result in run_passes(x, w, b, gy, g, tile=g.output_shape).items():
        # both round (at other FFT sizes: the tile has no cyclic padding trick): twice the model
        assert_close(result, untiled[pass_name], 2 * pass_tolerance(g, pass_name, np.float64), pass_name)


@pytest.mark.parametrize("backend", fftconv.available_backends())
def test_every_backend_and_size_policy(backend, rng):
    case = CASES["2d-stride-dil-groups-bias"]
    g = case.geometry
    x, w, b, gy = case.arrays(rng, np.float32)
    expected = oracle_passes(case, x, w, b, gy)
    for fft_size in ("fast", "pow2", "minimal", (8, 7)):
        results = run_passes(x, w, b, gy, g, backend=backend, fft_size=fft_size, tile=(2, 3))
        for pass_name, result in results.items():
            tol = tolerance(np.float32, 64, reduction_lengths(x.shape, w.shape, gy.shape, g.groups)[pass_name])
            assert_close(result, expected[pass_name], tol, f"{backend} {fft_size} {pass_name}")


def test_non_contiguous_arrays(rng):
    """Tiles are strided views: they must follow the caller's strides, not assume contiguous memory."""
    case = Case((2, 3, 8, 10), (4, 3, 3, 3), dict(padding=(0, 1)))
    x = rng.standard_normal((2, 8, 3, 20)).transpose(0, 2, 1, 3)[..., ::2]
    w = rng.standard_normal((3, 4, 3, 3)).transpose(1, 0, 2, 3)
    gy = rng.standard_normal((2, 4, 20, 6)).transpose(0, 1, 3, 2)[:, :, :, ::2]
    assert not (x.flags.c_contiguous or w.flags.c_contiguous or gy.flags.c_contiguous)
    expected = oracle_passes(case, x, w, None, gy)
    for pass_name, result in run_passes(x, w, None, gy, case.geometry, tile=(4, 3)).items():
        assert_close(result, expected[pass_name], tolerance(np.float64, 256, 100), pass_name)


# ---------------------------------------------------------------------- adjoint identities
@st.composite
def tiled_problems(draw):
    """A valid convolution with a tile of any size up to its output, and a seed for the values."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    in_channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    dims = st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim).map(tuple)
    kernel, dilation = draw(dims), draw(dims.map(lambda t: tuple(min(d, 2) for d in t)))
    padding = draw(st.one_of(st.just("same"), st.integers(0, 2),
                             st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim).map(tuple)))
    stride = (1,) * ndim if padding == "same" else draw(dims)
    extra = st.integers(0, 9 if ndim < 3 else 3)
    input_shape = tuple(d * (k - 1) + 1 + draw(extra) for k, d in zip(kernel, dilation))
    g = ConvGeometry.from_shapes((draw(st.integers(1, 2)), in_channels, *input_shape),
                                 (out_channels, in_channels // groups, *kernel), stride, padding, dilation, groups)
    tile = tuple(draw(st.integers(1, m)) for m in g.output_shape)
    return g, tile, draw(st.integers(0, 2 ** 32 - 1))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(problem=tiled_problems())
def test_adjoint_identities_and_direct(problem):
    """``<conv(x, w), gy> = <x, conv_input(gy, w)> = <w, conv_weight(x, gy)>``, and the forward pass equals the
    direct algorithm, for random geometries and tiles."""
    g, tile, seed = problem
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
    gy = rng.standard_normal(g.full_output_shape)
    y = tiled.forward(x, w, None, g, tile=tile)
    gx, gw = tiled.grad_input(gy, w, g, tile=tile), tiled.grad_weight(x, gy, g, tile=tile)
    forms = [float(np.vdot(y, gy)), float(np.vdot(x, gx)), float(np.vdot(w, gw))]
    # |<y, gy>| <= sqrt(taps) |x| |w| |gy| bounds all three forms (each input lies in at most `taps` windows); the
    # round-off is relative to that bound, not to the forms, which can cancel to zero
    scale = math.sqrt(math.prod(g.kernel_shape)) * np.linalg.norm(x) * np.linalg.norm(w) * np.linalg.norm(gy)
    tol = tolerance(np.float64, 2 ** (6 * g.ndim), max(math.prod(g.full_weight_shape[1:]), y.size))
    assert abs(forms[0] - forms[1]) <= tol * scale and abs(forms[0] - forms[2]) <= tol * scale, forms
    assert_close(y, ALGORITHMS["direct"].forward(x, w, None, g), tol, f"forward tile={tile}")


# ---------------------------------------------------------------------- PyTorch
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", ["1d-stride2-pad1-bias", "2d-same-even-bias", "2d-stride-dil-groups-bias",
                                     "3d-strided-padded-dilated"])
def test_matches_pytorch(case_id, dtype, rng):
    torch = pytest.importorskip("torch")
    case = CASES[case_id]
    g = case.geometry
    x, w, b, gy = case.arrays(rng, dtype)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    conv = getattr(torch.nn.functional, f"conv{g.ndim}d")
    yt = conv(xt, wt, None if b is None else torch.tensor(b), **case.options)
    yt.backward(torch.tensor(gy))
    expected = {"forward": yt.detach().numpy(), "input": xt.grad.numpy(), "weight": wt.grad.numpy()}
    tile = TILES["uneven"](g)
    for pass_name, result in run_passes(x, w, b, gy, g, tile=tile).items():
        # both sides round: twice the suite's model
        assert_close(result, expected[pass_name], 2 * pass_tolerance(g, pass_name, dtype), pass_name)


# ---------------------------------------------------------------------- interface and errors
def test_same_interface_as_the_registered_algorithms():
    """Positional parameters as the registry's entries take them, then the required keyword ``tile``."""
    for method in ("forward", "grad_input", "grad_weight"):
        registered = list(inspect.signature(getattr(ALGORITHMS["fft"], method)).parameters)
        parameters = inspect.signature(getattr(tiled, method)).parameters
        assert list(parameters) == [*registered, "tile"]
        assert parameters["tile"].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters["tile"].default is inspect.Parameter.empty


BAD_TILES = {(3,): "one per spatial dimension", (0, 2): "positive", (2.5, 2): "ints", (True, 2): "ints",
             "ab": "ints", (9, 2): "exceeds the output shape", 9: "exceeds the output shape", 3.0: "int",
             None: "int"}


@pytest.mark.parametrize("tile", list(BAD_TILES), ids=repr)
def test_bad_tiles_are_reasons_and_errors(tile, rng):
    case = Case((1, 2, 10, 9), (3, 2, 3, 3))  # output 8 x 7
    g = case.geometry
    x, w, _, gy = case.arrays(rng, np.float64)
    if tile is not None:
        reason = tiled.unsupported_reason(g, tile)
        assert isinstance(reason, str) and BAD_TILES[tile] in reason
    for call in (lambda: tiled.forward(x, w, None, g, tile=tile), lambda: tiled.grad_input(gy, w, g, tile=tile),
                 lambda: tiled.grad_weight(x, gy, g, tile=tile), lambda: tiled.peak_bytes(g, "forward", tile)):
        with pytest.raises(ValueError, match="tile"):
            call()


def test_every_geometry_is_supported():
    for case in CASES.values():
        g = case.geometry
        assert tiled.unsupported_reason(g) is None
        assert tiled.unsupported_reason(g, g.output_shape) is None


def test_option_errors(rng):
    g = Case((1, 2, 20), (3, 2, 5)).geometry  # dilated kernel 5, output 16
    x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
    with pytest.raises(ValueError, match="too small"):  # tiles of 8 read 12 positions
        tiled.forward(x, w, None, g, fft_size=(10,), tile=8)
    with pytest.raises(ValueError, match="fft_size must be one of"):
        tiled.forward(x, w, None, g, fft_size="fastest", tile=8)
    with pytest.raises(ValueError, match="one entry per spatial dimension"):
        tiled.forward(x, w, None, g, fft_size=(16, 16), tile=8)
    with pytest.raises(ValueError, match="pass_name must be one of"):
        tiled.peak_bytes(g, "backward", 4)
    with pytest.raises(ValueError, match="unknown"):
        tiled.forward(x, w, None, g, backend="cufft", tile=4)


def test_memory_is_checked_before_allocating(monkeypatch, rng):
    case = Case((2, 3, 40, 40), (4, 3, 3, 3))
    g = case.geometry
    x, w, _, gy = case.arrays(rng, np.float32)
    peak = tiled.peak_bytes(g, "forward", 8, np.float32)
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", str(peak // 2))
    with pytest.raises(MemoryError, match="tiled FFT convolution"):
        tiled.forward(x, w, None, g, tile=8)
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", str(peak))
    tiled.forward(x, w, None, g, tile=8)


# ---------------------------------------------------------------------- counts
BIG = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")


@pytest.mark.parametrize("pass_name", ["forward", "input", "weight"])
def test_fft_work_counts_the_maps_the_passes_transform(pass_name, rng):
    """The spectral work of the tile geometry is what the passes run: maps counted by a counting backend."""
    case = CASES["2d-stride-dil-groups-bias"]
    g, tile = case.geometry, (2, 3)
    work = TiledWork.of(g, pass_name, tile)
    tile_geometry = work.tiling.tile_geometry
    assert tile_geometry.batch == g.batch * math.prod(work.tiling.counts) and tile_geometry.output_shape == tile
    fft_work = work.fft_work(fft_shape_for(tile_geometry))
    counter = CountingBackend(fftconv.NumpyBackend())
    x, w, b, gy = case.arrays(rng, np.float64)
    {"forward": lambda: tiled.forward(x, w, b, g, counter, tile=tile),
     "input": lambda: tiled.grad_input(gy, w, g, counter, tile=tile),
     "weight": lambda: tiled.grad_weight(x, gy, g, counter, tile=tile)}[pass_name]()
    # the counting backend counts kernel-size maps transformed by DFT matrices as maps too
    assert (counter.forward_maps, counter.inverse_maps) == tuple(
        fft + matrix for fft, matrix in zip(fft_work.fft_maps, fft_work.matrix_maps))


def test_tiling_copies_by_hand():
    """1-d, S=2, f=3 -> f'=4, n=14, k=3, stride 2, padding 1: output 7, tiles of 3 (the last partial, 3 tiles)."""
    g = ConvGeometry.from_shapes((2, 3, 14), (4, 3, 3), stride=2, padding=1)
    work = TiledWork.of(g, "forward", (3,))
    tiling = work.tiling
    assert (tiling.counts, tiling.step, tiling.read, tiling.span, tiling.covered) == ((3,), (6,), (7,), (19,), (9,))
    # zero the padded input (2*3*19 values, half a copy each), copy the map in (2*3*14), gather 6 tiles of 3 x 7,
    # copy the 6 output tiles of 4 x 3 into blocks, crop the 9 computed outputs to 7
    assert work.copies == ((2 * 3 * 19 / 2, 19), (2 * 3 * 14, 14), (6 * 3 * 7, 7), (6 * 4 * 3, 3), (2 * 4 * 7, 7))
    grad = TiledWork.of(g, "input", (3,))
    # dy zero-extended to 9 and gathered; the overlap-add: ceil(7 / 6) = 2 classes, one copied and one added;
    # the zeroed padded gradient (extent max(19, 1 + 14)), and the crop of the padding
    assert grad.copies == ((2 * 4 * 9 / 2, 9), (2 * 4 * 7, 7), (6 * 4 * 3, 3), (6 * 3 * 7 * 1.25, 7),
                           (2 * 3 * 19 / 2, 19), (2 * 3 * 14, 14))
    weight = TiledWork.of(g, "weight", (3,))
    assert weight.copies == work.copies[:3] + grad.copies[:3]
    assert weight.copied_elements == sum(e for e, _ in weight.copies)


def test_tiling_bounds_the_spectra():
    """The worked example of docs/tiled.md: 3x3 kernels on 128x128 maps."""
    untiled = SpectralPlan.create(BIG, np.float32, check_memory=False)
    work = TiledWork.of(BIG, "forward", (16, 16))
    fft_shape = fft_shape_for(work.tiling.tile_geometry)
    assert untiled.fft_shape == (135, 135) and fft_shape == (18, 18)
    assert tiled.peak_bytes(BIG, "forward", 16) < 0.7 * untiled.peak_bytes()
    tiled_kernels = work.fft_work(fft_shape, kernels_by_gemm=True).flops().forward_transforms
    untiled_kernels = TiledWork.of(BIG, "forward", (128, 128)).fft_work((135, 135), kernels_by_gemm=True)
    assert tiled_kernels < 0.5 * untiled_kernels.flops().forward_transforms
