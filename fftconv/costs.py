"""Operation counts and memory: the paper's formulas, and the work fftconv actually executes.

The only home of these counts; the cost model (:mod:`fftconv.choose.model`) turns them into seconds. The paper's
counts (section 2, Table 1, and its memory formula; see docs/paper.md) are for one layer with a minibatch of ``S``
images of ``f`` input maps of size ``n x n``, ``f'`` output maps and ``k x k`` kernels, one operation per
multiply-add. ``C`` is the constant of the FFT's ``O(n^2 log n)``, which the paper does not state; ``C = 5`` (the
usual ``5 N log2 N`` complex-FFT count) matches its Figure 2.

What fftconv executes is counted in real floating-point operations (a multiply and an add count as two): a real FFT
of ``N`` points costs ``2.5 N log2 N`` flops (half a complex FFT), small kernels may instead be transformed by
DFT-matrix products (:func:`kernel_dft_flops`), and the per-bin complex GEMMs cost 8 flops per complex multiply-add
over the bins :func:`fftconv.spectral.hermitian_matmul` multiplies (the half spectrum less its conjugate pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ._tiling import Tiling, tile_counts
from .geometry import ConvGeometry
from .passes import Pass
from .rates import MachineRates, get_rates
from .sizes import half_spectrum_shape, multiplied_bins

#: The constant of the paper's FFT cost used when none is given (see the module docstring).
DEFAULT_FFT_CONSTANT = 5.0


# ---------------------------------------------------------------------- the paper's counts
def direct_ops(batch: int, in_channels: int, out_channels: int, input_size: int, kernel_size: int) -> int:
    """The paper's operation count of a direct convolution layer: ``S f' f (n - k + 1)^2 k^2``.

    The paper gives the same count for all three passes (its Table 1). One operation is one multiply-add.

    Examples
    --------
    The setting of the paper's Figure 2 (S=128, f=96, f'=256, k=7) at n=32:

    >>> direct_ops(128, 96, 256, 32, 7)
    104199094272
    """
    _check_positive(batch=batch, in_channels=in_channels, out_channels=out_channels, input_size=input_size,
                    kernel_size=kernel_size)
    if kernel_size > input_size:
        raise ValueError(f"kernel_size={kernel_size} is larger than input_size={input_size}")
    return batch * out_channels * in_channels * (input_size - kernel_size + 1) ** 2 * kernel_size ** 2


def fft_ops(batch: int, in_channels: int, out_channels: int, input_size: int,
            fft_constant: float = DEFAULT_FFT_CONSTANT) -> float:
    """The paper's operation count of an FFT convolution layer (Table 1, forward row), independent of ``k``.

    ``2C n^2 log2(n) (S f + f' f) + 4 S f' f n^2 + 2C n^2 log2(n) S f'``: forward transforms of inputs and kernels,
    the products in the frequency domain, and the inverse transforms of the outputs.

    Examples
    --------
    >>> f"{fft_ops(128, 96, 256, 32):.4g}"
    '1.645e+10'
    >>> fft_ops(1, 1, 1, 2, fft_constant=1.0)  # 2*4*1*(1+1) + 4*4 + 2*4*1
    40.0
    """
    _check_positive(batch=batch, in_channels=in_channels, out_channels=out_channels, input_size=input_size)
    if fft_constant <= 0:
        raise ValueError(f"fft_constant must be positive, got {fft_constant}")
    one_transform = 2 * fft_constant * input_size ** 2 * math.log2(input_size)
    forward_transforms = one_transform * (batch * in_channels + out_channels * in_channels)
    products = 4 * batch * out_channels * in_channels * input_size ** 2
    inverse_transforms = one_transform * batch * out_channels
    return forward_transforms + products + inverse_transforms


def paper_memory_bytes(batch: int, in_channels: int, out_channels: int, input_size: int) -> int:
    """The paper's memory for the spectra of one layer (section 2.3): ``4 n (n + 1) (S f + S f' + f f')`` bytes.

    ``S f + S f' + f f'`` maps, each stored as ``n (n + 1) / 2`` complex numbers of two 4-byte floats.

    Examples
    --------
    The first row of the paper's memory table (printed as 76MB, with MB = 10^6 bytes):

    >>> paper_memory_bytes(128, 96, 256, 16)
    75759616
    """
    _check_positive(batch=batch, in_channels=in_channels, out_channels=out_channels, input_size=input_size)
    maps = batch * in_channels + batch * out_channels + in_channels * out_channels
    return 4 * input_size * (input_size + 1) * maps


# ---------------------------------------------------------------------- what fftconv executes
def real_fft_flops(fft_shape: Sequence) -> float:
    """Flops of one real multi-dimensional FFT of ``N = prod(fft_shape)`` points: ``2.5 N log2 N``.

    Half the conventional ``5 N log2 N`` of a complex FFT, since a real transform does about half the work. The same
    count is used for the inverse; a one-point transform costs nothing. The sizes may be numpy arrays that
    broadcast (one per axis), to count many FFT shapes at once.

    Examples
    --------
    >>> real_fft_flops((32, 32))
    25600.0
    >>> real_fft_flops((np.array([4, 8]), 8)).tolist()
    [400.0, 960.0]
    """
    points = math.prod(fft_shape)
    if np.any(np.less(points, 1)):
        raise ValueError(f"fft_shape must have positive sizes, got {tuple(fft_shape)}")
    flops = 2.5 * points * np.log2(points)
    return flops if isinstance(flops, np.ndarray) else float(flops)


def kernel_dft_flops(kernel_shape: Sequence[int], fft_shape: Sequence[int]) -> float:
    """Flops of transforming one kernel-size map by DFT-matrix products (fftconv's alternative to an FFT).

    Applied one axis at a time, the half spectrum of a ``k``-support map costs ``sum_i prod(k[:i+1]) *
    prod(bins[i:])`` complex multiply-adds (8 flops each), with ``bins`` the half-spectrum shape; the inverse that
    reads only ``k`` outputs per axis costs the same.

    Examples
    --------
    >>> kernel_dft_flops((3, 3), (8, 8))  # 8 * (3*8*5 + 3*3*5)
    1320.0
    """
    bins = half_spectrum_shape(fft_shape)
    multiply_adds = sum(math.prod(kernel_shape[:i + 1]) * math.prod(bins[i:]) for i in range(len(bins)))
    return 8.0 * multiply_adds


def kernels_by_matrix(kernel_shape: Sequence[int], fft_shape: Sequence[int], rates: MachineRates | None = None) -> bool:
    """Whether kernel-size maps are transformed faster by DFT matrices than by the FFT, at these rates.

    Each way's flops at its rate (:attr:`~fftconv.rates.MachineRates.dft_matrix_flops` and
    :attr:`~fftconv.rates.MachineRates.fft_flops`); the FFT way also pays its cost per map
    (:attr:`~fftconv.rates.MachineRates.fft_map_seconds`) and the zero-padded ``fft_shape`` float32 buffer of each
    kernel, which the matrices never build, moved three times at
    :attr:`~fftconv.rates.MachineRates.copy_bytes` (zero-filled, the kernel written in, read by the FFT). Measured
    with calibrated rates of 31 GFLOP/s (FFT) and 43 GFLOP/s (matrices), where the bare flop comparison picked the
    FFT: 147456 kernels of 5 x 5 at 16 x 16 took 111 ms by FFT and 31 ms by matrices; 4096 of 13 x 13 at 32 x 32,
    8.3 and 5.2 ms. ``rates`` defaults to the rates in use (:func:`fftconv.rates.get_rates`).

    Examples
    --------
    >>> defaults = MachineRates()
    >>> kernels_by_matrix((5, 5), (32, 32), defaults), kernels_by_matrix((31, 31), (32, 32), defaults)
    (True, False)
    """
    rates = rates or get_rates()
    by_matrix = rates.dft_matrix_seconds(kernel_dft_flops(kernel_shape, fft_shape))
    padded_buffer = 3 * 4 * math.prod(fft_shape) / rates.copy_bytes
    return by_matrix < rates.fft_seconds(real_fft_flops(fft_shape)) + rates.fft_map_seconds + padded_buffer


@dataclass(frozen=True)
class FlopCount:
    """Real flops of one FFT convolution pass, split by stage.

    ``forward_transforms`` and ``inverse_transforms`` include kernel-size maps transformed by DFT-matrix products
    when ``kernels_by_gemm`` is true.
    """

    forward_transforms: float
    products: float
    inverse_transforms: float
    kernels_by_gemm: bool = False

    @property
    def transforms(self) -> float:
        return self.forward_transforms + self.inverse_transforms

    @property
    def total(self) -> float:
        return self.forward_transforms + self.products + self.inverse_transforms


@dataclass(frozen=True)
class FFTPassWork:
    """The transforms and products one pass of the FFT algorithm executes at one FFT size.

    Every pass transforms its two operands and inverse-transforms its result (nothing is cached between passes),
    and does one complex GEMM ``(m x k) @ (k x n)`` per multiplied bin and group:

    ============  =========================  ===================  ===================
    pass          forward transforms (maps)  inverse (maps)       GEMM ``m x k x n``
    ============  =========================  ===================  ===================
    forward       ``S f + f' f/g``           ``S f'``             ``S x f/g x f'/g``
    input         ``S f' + f' f/g``          ``S f``              ``S x f'/g x f/g``
    weight        ``S f + S f'``             ``f' f/g``           ``f'/g x S x f/g``
    ============  =========================  ===================  ===================

    with ``g`` groups. The ``f' f/g`` kernel-size maps (kernels, and the weight gradient's inverse) are done by
    DFT-matrix products when ``kernels_by_gemm`` is true. Cropping, layout copies and conjugation move data and
    are not counted.
    """

    pass_name: Pass
    fft_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    kernels_by_gemm: bool
    fft_maps: tuple[int, int]      # (forward, inverse) maps transformed by the FFT backend
    matrix_maps: tuple[int, int]   # (forward, inverse) kernel-size maps transformed by DFT matrices
    gemm_shape: tuple[int, int, int]  # (m, k, n) of one per-bin product
    gemm_count: int                # per-bin products: multiplied bins times groups

    @classmethod
    def of(cls, geometry: ConvGeometry, fft_shape: Sequence[int], pass_name: Union[Pass, str] = Pass.FORWARD,
           kernels_by_gemm: bool | None = None) -> "FFTPassWork":
        """The work of ``pass_name`` on ``geometry`` at ``fft_shape``; ``kernels_by_gemm=None``: as fftconv decides
        (:func:`kernels_by_matrix` at the rates in use)."""
        pass_name = Pass.parse(pass_name)
        fft_shape = tuple(int(n) for n in fft_shape)
        if len(fft_shape) != geometry.ndim:
            raise ValueError(f"fft_shape={fft_shape} must have one size per spatial dimension ({geometry.ndim})")
        if kernels_by_gemm is None:
            kernels_by_gemm = kernels_by_matrix(geometry.kernel_shape, fft_shape)
        g = geometry
        cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
        inputs, grads, kernels = g.batch * g.in_channels, g.batch * g.out_channels, g.out_channels * cg
        forward_maps, inverse_maps, kernel_end, gemm = {
            Pass.FORWARD: (inputs, grads, 0, (g.batch, cg, fg)),
            Pass.INPUT: (grads, inputs, 0, (g.batch, fg, cg)),
            Pass.WEIGHT: (inputs + grads, 0, 1, (fg, g.batch, cg)),
        }[pass_name]
        kernel_maps = [0, 0]
        kernel_maps[kernel_end] = kernels
        fft_maps = [forward_maps, inverse_maps]
        if not kernels_by_gemm:
            fft_maps[kernel_end] += kernels
            kernel_maps = [0, 0]
        return cls(pass_name, fft_shape, g.kernel_shape, bool(kernels_by_gemm), tuple(fft_maps),
                   tuple(kernel_maps), gemm, multiplied_bins(fft_shape) * g.groups)

    def flops(self) -> FlopCount:
        """The flops of this work, split into forward transforms, products and inverse transforms."""
        one = real_fft_flops(self.fft_shape)
        by_matrix = kernel_dft_flops(self.kernel_shape, self.fft_shape)
        m, k, n = self.gemm_shape
        return FlopCount(forward_transforms=self.fft_maps[0] * one + self.matrix_maps[0] * by_matrix,
                         products=complex_gemm_flops(m, k, n) * self.gemm_count,
                         inverse_transforms=self.fft_maps[1] * one + self.matrix_maps[1] * by_matrix,
                         kernels_by_gemm=self.kernels_by_gemm)


def executed_flops(geometry: ConvGeometry, fft_shape: Sequence[int], pass_name: Union[Pass, str] = Pass.FORWARD,
                   kernels_by_gemm: bool | None = None) -> FlopCount:
    """Flops fftconv executes for one pass of ``geometry`` at circular size ``fft_shape`` (see :class:`FFTPassWork`).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((128, 96, 32, 32), (256, 96, 7, 7))
    >>> count = executed_flops(g, (32, 32), "forward", kernels_by_gemm=False)
    >>> f"{count.total:.4g}", f"{count.products / count.total:.2f}"
    ('1.472e+10', '0.88')
    """
    return FFTPassWork.of(geometry, fft_shape, pass_name, kernels_by_gemm).flops()


def complex_gemm_flops(m: int, k: int, n: int) -> float:
    """Flops of one complex GEMM ``(m x k) @ (k x n)``: 8 per complex multiply-add."""
    return 8.0 * m * k * n


def real_gemm_flops(m: int, k: int, n: int) -> float:
    """Flops of one real GEMM ``(m x k) @ (k x n)``: 2 per multiply-add."""
    return 2.0 * m * k * n


def direct_flops(geometry: ConvGeometry) -> int:
    """Flops of one pass of a direct (or im2col) convolution: two per multiply-add, ``2 S f' (f/g) m k``.

    ``m`` and ``k`` are the products of the output and kernel sizes. All three passes have the same count.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((128, 96, 32, 32), (256, 96, 7, 7))
    >>> direct_flops(g) == 2 * direct_ops(128, 96, 256, 32, 7)
    True
    """
    return (2 * geometry.batch * geometry.out_channels * (geometry.in_channels // geometry.groups)
            * math.prod(geometry.output_shape) * math.prod(geometry.kernel_shape))


# ---------------------------------------------------------------------- Winograd
def separable_transform_flops(sizes_in: Sequence[int], sizes_out: Sequence[int], rest: int) -> int:
    """Flops of applying one dense ``out_d x in_d`` matrix along each leading axis in turn, to ``rest`` points each.

    Axis ``d`` maps ``prod(out[:d]) * in_d * prod(in[d+1:])`` values to ``out_d``, two flops per multiply-add: a
    tensor product of 1-d transforms costs ``sum_d out_d in_d`` per point instead of ``prod``.

    Examples
    --------
    >>> separable_transform_flops((6, 6), (4, 4), 1)  # 2 * (4*6*6 + 4*6*4)
    480
    """
    total = 0
    for d, (n_in, n_out) in enumerate(zip(sizes_in, sizes_out)):
        total += 2 * n_out * n_in * math.prod(sizes_out[:d]) * math.prod(sizes_in[d + 1:]) * rest
    return total


@dataclass(frozen=True)
class WinogradWork:
    """What one pass of Winograd's ``F(m, r)`` (:mod:`fftconv.winograd`) computes, copies and stores.

    Every pass is a tiled correlation with three roles: the *data* tiles (transformed by ``B^T``), the *filters*
    (``G``) and the *products* (one real GEMM per transform position and group, then the output transform ``A^T``):

    ========  =========================  ===========================  ==============================
    pass      data (``B^T``)             filters (``G``)              products (``A^T``)
    ========  =========================  ===========================  ==============================
    forward   ``S T`` input tiles, f     ``f' f/g`` kernels           ``S T`` tiles, ``f'`` -> ``m``
    input     ``S T`` dy tiles, f'       ``f f'/g`` flipped kernels   ``S T`` tiles, ``f`` -> ``m``
    weight    ``S T`` input tiles, f     ``S T`` dy tiles, ``f'``     ``f' f/g`` -> ``r``
    ========  =========================  ===========================  ==============================

    ``T`` is the number of tiles per image (over the output, or over the input for the input gradient). Transform
    flops count the dense matrix products that run, zeros included; ``gemm_flops`` is ``2 M N K`` summed over the
    ``gemm_count`` GEMMs of shape ``gemm_shape = (M, N, K)`` (before the split into chunks); the ``*_bytes`` are
    the transformed arrays in total (at run time only chunks of the data and products exist at once).
    ``padded_elements`` counts the zero-padded copies of the data (and of the weight gradient's ``dy``) made when
    the tiles do not line up with the arrays. ``copies`` lists the strided copies as ``(elements, innermost run)``,
    in units of one element read and written (a zero fill counts half): zero padding, the data (and the weight
    gradient's ``dy``) transposed channels-last, scattering the output tiles. The tile must be valid
    (:func:`fftconv.winograd.unsupported_reason`).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 64, 32, 32), (64, 64, 3, 3), padding=1)
    >>> work = WinogradWork.of(g, "forward", (4, 4))
    >>> work.positions, work.tiles, work.gemm_shape
    (36, 64, (64, 2048, 64))
    >>> round(work.direct_flops / work.gemm_flops, 2)  # (4*3)^2 / 6^2 fewer multiplications
    4.0
    """

    pass_name: Pass
    tile: tuple[int, ...]
    transform_size: tuple[int, ...]
    tile_counts: tuple[int, ...]
    tiles: int
    positions: int
    data_transform_flops: int
    filter_transform_flops: int
    output_transform_flops: int
    gemm_flops: int
    gemm_count: int
    gemm_shape: tuple[int, int, int]
    data_bytes: int
    filter_bytes: int
    product_bytes: int
    direct_flops: int
    padded_elements: int
    copies: tuple[tuple[float, int], ...]
    itemsize: int

    @classmethod
    def of(cls, geometry: ConvGeometry, pass_name: Union[Pass, str], tile: Sequence[int],
           dtype=np.float32) -> "WinogradWork":
        """The work of ``pass_name`` on ``geometry`` (stride and dilation 1) with output tiles ``tile``."""
        pass_name = Pass.parse(pass_name)
        g, tile = geometry, tuple(int(m) for m in tile)
        itemsize = np.dtype(dtype).itemsize
        taps, groups, batch = g.kernel_shape, g.groups, g.batch
        alpha = tuple(m + r - 1 for m, r in zip(tile, taps))
        positions = math.prod(alpha)
        computed = g.input_shape if pass_name is Pass.INPUT else g.output_shape  # what the tiles cover
        counts = tile_counts(computed, tile)
        tiles = math.prod(counts)
        f_in, f_out = g.in_channels // groups, g.out_channels // groups
        data_channels = g.out_channels if pass_name is Pass.INPUT else g.in_channels
        product_channels = g.in_channels if pass_name is Pass.INPUT else g.out_channels
        kernels = g.out_channels * f_in
        data_values = positions * batch * tiles * data_channels
        # the data, zero-padded to whole tiles when it does not already line up, then gathered tile by tile
        data_map = g.full_output_shape if pass_name is Pass.INPUT else g.full_input_shape
        length = tuple(c * m + r - 1 for c, m, r in zip(counts, tile, taps))
        padded = 0 if _lines_up(g, pass_name, length) else math.prod(length) * batch * data_channels
        copies = [(padded / 2, length[-1]), (math.prod(data_map), data_map[-1])] if padded else []
        # the data transposed channels-last, in runs of one channel vector (the transforms read its tiles in place)
        data_channels_last = math.prod(length) * batch * data_channels
        copies.append((data_channels_last, data_channels))
        common = dict(pass_name=pass_name, itemsize=itemsize, tile=tile, transform_size=alpha, tile_counts=counts,
                      tiles=tiles, positions=positions,
                      data_transform_flops=separable_transform_flops(alpha, alpha, batch * tiles * data_channels),
                      gemm_flops=2 * positions * kernels * batch * tiles, gemm_count=positions * groups,
                      data_bytes=data_values * itemsize,
                      direct_flops=2 * batch * kernels * math.prod(g.output_shape) * math.prod(taps))
        if pass_name is Pass.WEIGHT:
            covered = tuple(c * m for c, m in zip(counts, tile))
            if covered != g.output_shape:  # the output gradient zero-padded to whole tiles
                padded += math.prod(covered) * batch * g.out_channels
                copies += [(math.prod(covered) * batch * g.out_channels / 2, covered[-1]),
                           (math.prod(g.full_output_shape), g.output_shape[-1])]
            copies.append((batch * g.out_channels * math.prod(covered), g.out_channels))  # it too channels-last
            return cls(**common, filter_transform_flops=separable_transform_flops(tile, alpha,
                                                                                   batch * tiles * g.out_channels),
                       output_transform_flops=separable_transform_flops(alpha, taps, kernels),
                       gemm_shape=(f_out, batch * tiles, f_in),
                       filter_bytes=positions * batch * tiles * g.out_channels * itemsize,
                       product_bytes=positions * kernels * itemsize, padded_elements=padded,
                       copies=tuple(copies))
        outputs = batch * tiles * product_channels * math.prod(tile)
        copies.append((outputs, tile[-1]))  # output tiles scattered into the result
        if tuple(c * m for c, m in zip(counts, tile)) != tuple(computed):  # the partial last tiles cropped
            copies.append((batch * product_channels * math.prod(computed), computed[-1]))
        return cls(**common, filter_transform_flops=separable_transform_flops(taps, alpha, kernels),
                   output_transform_flops=separable_transform_flops(alpha, tile, batch * tiles * product_channels),
                   gemm_shape=(product_channels // groups, batch * tiles, data_channels // groups),
                   filter_bytes=positions * kernels * itemsize,
                   product_bytes=positions * batch * tiles * product_channels * itemsize, padded_elements=padded,
                   copies=tuple(copies))

    @property
    def transform_flops(self) -> int:
        """Flops of the data, filter and output transforms together."""
        return self.data_transform_flops + self.filter_transform_flops + self.output_transform_flops

    @property
    def flops(self) -> int:
        """All flops: the transforms and the GEMMs."""
        return self.transform_flops + self.gemm_flops


def _lines_up(g: ConvGeometry, pass_name: Pass, length: Sequence[int]) -> bool:
    """Whether a Winograd pass reads its data in place: no shift to make and exactly ``length`` long."""
    if pass_name is Pass.INPUT:
        lead = tuple(r - 1 - b for r, b in zip(g.kernel_shape, g.padding_before))
        return not any(lead) and tuple(length) == g.output_shape
    return not any(g.padding_before) and tuple(length) == g.input_shape


def winograd_workspace_bytes(geometry: ConvGeometry, work: WinogradWork, chunk_bytes: int, tasks: int) -> int:
    """Bytes a Winograd pass (``work``) allocates at its peak: the padded data, the transformed filters, the result
    (and its crop), and the working set of ``tasks`` chunks in flight, each holding its ``chunk_bytes`` of transformed
    tiles and products at most twice (a transform stage's input and output, or the GEMM's operands and result; in
    the weight gradient the transformed input tiles while the output gradient's are made), plus each task's partial
    sums and the last block's products in the weight gradient.
    """
    g, itemsize = geometry, work.itemsize
    result = {Pass.FORWARD: g.full_output_shape, Pass.INPUT: g.full_input_shape,
              Pass.WEIGHT: g.full_weight_shape}[work.pass_name]
    partial = work.product_bytes if work.pass_name is Pass.WEIGHT else 0
    filters = work.filter_bytes if work.pass_name is not Pass.WEIGHT else 0
    return (work.padded_elements * itemsize + filters + 2 * math.prod(result) * itemsize
            + tasks * (2 * chunk_bytes + 2 * partial))


# ---------------------------------------------------------------------- tiled FFT
@dataclass(frozen=True)
class TiledWork:
    """What the tiled FFT algorithm (:mod:`fftconv.tiled`) adds to the FFT passes of its tile geometry.

    The spectral passes run on :attr:`~fftconv._tiling.Tiling.tile_geometry` (their transforms and products are
    :class:`FFTPassWork` of it); the tiling itself copies data, listed in ``copies`` as ``(elements, innermost
    run)`` in units of one element copied (read and written once): a zero fill counts half, an add one and a half.

    - the input tiles (forward, weight): the zero-padded input when there is padding or the tiles reach past the
      map (filled, then the map copied in), then the ``B f prod(read)`` tile values gathered;
    - the output-gradient tiles (input, weight): a zero-extended copy when the tiles reach past the output, then
      ``B f' prod(t)`` values;
    - forward: the tiles' outputs copied into blocks, and a partial last tile cropped;
    - input gradient: the zeroed padded gradient, the overlap-add (the first class of disjoint tiles copied, a
      ``1 / prod(ceil(read / step))`` share, the rest added), and the crop of the padding.

    ``spatial_elements`` counts the spatial arrays alive beside the spectra: the tiles transformed and the result
    (the padded buffers are freed once the tiles are gathered).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    >>> work = TiledWork.of(g, "forward", (16, 16))
    >>> work.tiling.counts, work.tiling.read, work.tiling.tile_geometry.batch
    ((8, 8), (18, 18), 512)
    """

    pass_name: Pass
    tiling: Tiling
    copies: tuple[tuple[float, int], ...]
    spatial_elements: int

    @classmethod
    def of(cls, geometry: ConvGeometry, pass_name: Union[Pass, str], tile: Sequence[int]) -> "TiledWork":
        """The tiling's work for ``pass_name`` on ``geometry`` with ``tile`` outputs per tile (a valid tile)."""
        pass_name = Pass.parse(pass_name)
        g, tiling = geometry, Tiling(geometry, tuple(int(t) for t in tile))
        batch, read, tile = tiling.tile_geometry.batch, tiling.read, tiling.tile
        x_space, y_space = math.prod(g.input_shape), math.prod(g.output_shape)
        input_copies, output_copies = [], []
        if any(g.padding_before) or any(e > n for e, n in zip(tiling.span, g.input_shape)):
            input_copies += [(g.batch * g.in_channels * math.prod(tiling.span) / 2, tiling.span[-1]),
                             (g.batch * g.in_channels * x_space, g.input_shape[-1])]
        input_tiles = batch * g.in_channels * math.prod(read)
        input_copies.append((input_tiles, read[-1]))
        partial = tiling.covered != g.output_shape
        if partial:
            output_copies += [(g.batch * g.out_channels * math.prod(tiling.covered) / 2, tiling.covered[-1]),
                              (g.batch * g.out_channels * y_space, g.output_shape[-1])]
        output_tiles = batch * g.out_channels * math.prod(tile)
        output_copies.append((output_tiles, tile[-1]))
        if pass_name is Pass.FORWARD:
            crop = [(g.batch * g.out_channels * y_space, g.output_shape[-1])] if partial else []
            copies = input_copies + [(output_tiles, tile[-1])] + crop
            spatial = input_tiles + math.prod(g.full_output_shape)
        elif pass_name is Pass.INPUT:
            first_class = 1 / math.prod(tiling.overlap_classes)
            extent = tuple(max(e, b + n) for e, b, n in zip(tiling.span, g.padding_before, g.input_shape))
            padded = g.batch * g.in_channels * math.prod(extent)
            copies = output_copies + [(input_tiles * (1.5 - first_class / 2), read[-1]), (padded / 2, extent[-1]),
                                      (g.batch * g.in_channels * x_space, g.input_shape[-1])]
            spatial = output_tiles + math.prod(g.full_input_shape)
        else:
            copies = input_copies + output_copies
            spatial = input_tiles + output_tiles + math.prod(g.full_weight_shape)
        return cls(pass_name, tiling, tuple(copies), int(spatial))

    def fft_work(self, fft_shape: Sequence[int], kernels_by_gemm: bool | None = None) -> FFTPassWork:
        """The transforms and products of the spectral pass on the tile geometry at ``fft_shape``."""
        return FFTPassWork.of(self.tiling.tile_geometry, fft_shape, self.pass_name, kernels_by_gemm)

    @property
    def copied_elements(self) -> float:
        """Elements the tiling copies, in units of one element read and written."""
        return sum(elements for elements, _ in self.copies)


# ---------------------------------------------------------------------- bytes
def spectra_bytes(geometry: ConvGeometry, fft_shape: Sequence[int], complex_itemsize: int = 8,
                  kernels: bool = True) -> int:
    """Bytes of the half spectra of a training step's ``S f + S f' + f' f/g`` maps (without the storage's padding;
    ``kernels=False``: of the ``S f + S f'`` input and output maps only).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((128, 96, 16, 16), (256, 96, 3, 3))
    >>> spectra_bytes(g, (16, 16)), spectra_bytes(g, (16, 16), kernels=False)  # 16 x 9 bins
    (80216064, 51904512)
    """
    g = geometry
    maps = g.batch * g.in_channels + g.batch * g.out_channels
    if kernels:
        maps += g.out_channels * (g.in_channels // g.groups)
    return complex_itemsize * math.prod(half_spectrum_shape(fft_shape)) * maps


def im2col_column_bytes(geometry: ConvGeometry, dtype=np.float32) -> int:
    """Bytes of im2col's unfolded input, ``(f * prod(k), S * prod(m))`` values."""
    g = geometry
    return g.batch * math.prod(g.output_shape) * g.in_channels * math.prod(g.kernel_shape) * np.dtype(dtype).itemsize


def spatial_workspace_bytes(geometry: ConvGeometry, dtype, algo: str, pass_name: Union[Pass, str]) -> int:
    """Bytes a spatial algorithm (``"im2col"`` or ``"direct"``) allocates at the peak of one pass on ``dtype`` arrays.

    Each pass runs in phases, and the peak is the largest phase: the arrays alive together in it. With ``P``, ``X``
    and ``Y`` the values of the padded input, the input and the output, ``C`` those of im2col's unfolded input
    (:func:`im2col_column_bytes`) and ``W`` the weight's:

    - im2col (in ``dtype``): forward ``max(P + C, C + Y, 2 Y)`` (unfold from the padded input, the GEMM writes
      ``Y^T``, copied to ``Y``); input gradient ``max(Y + C, C + P + X)`` (``GY^T`` and the unfolded gradient, then
      col2im into a zeroed padded gradient, cropped); weight gradient
      ``Y + C + P + 2 W`` (``GY^T``, the unfolded input and the GEMM's partial sums). ``P`` (and the crop ``X``) are
      allocated only when there is padding, except the input gradient's zeroed ``P``.
    - direct (in float64, 8 bytes, whatever ``dtype``): the input converted and padded, the float64 result and one
      tap's einsum result, then the result cast back to ``dtype``; the gradients likewise, with the output gradient
      converted and the zeroed padded input gradient; plus einsum's iterator buffers (``numpy.getbufsize()``
      values per operand).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((2, 3, 32, 32), (256, 3, 3, 3), padding=1)  # f' >> f k: Y dominates
    >>> spatial_workspace_bytes(g, np.float32, "im2col", "forward") == 4 * 2 * math.prod(g.full_output_shape)
    True
    """
    pass_name = Pass.parse(pass_name)
    g, itemsize = geometry, np.dtype(dtype).itemsize
    padded = any(g.padding_before) or any(g.padding_after)
    inputs, outputs = math.prod(g.full_input_shape), math.prod(g.full_output_shape)
    padded_inputs = math.prod(g.full_padded_input_shape)
    weights = math.prod(g.full_weight_shape)
    if algo == "im2col":
        columns = im2col_column_bytes(g, dtype) // itemsize
        padding = padded_inputs if padded else 0
        elements = {Pass.FORWARD: max(padding + columns, columns + outputs, 2 * outputs),
                    Pass.INPUT: max(outputs + columns, columns + padded_inputs + (inputs if padded else 0)),
                    Pass.WEIGHT: outputs + columns + padding + 2 * weights}[pass_name]
        return elements * itemsize
    if algo != "direct":
        raise ValueError(f"algo must be 'im2col' or 'direct', got {algo!r}")
    wide = 8  # the direct loop accumulates in float64
    converted = wide * inputs if itemsize != wide else 0  # the input cast to float64 (then padded)
    input_alive = wide * padded_inputs if padded else converted
    convert_and_pad = converted + (wide * padded_inputs if padded else 0)
    taps_windows = wide * g.batch * g.in_channels * math.prod(g.output_shape)  # one tap's einsum over the input
    grad = wide * outputs  # the output gradient cast to float64 (a copy even from float64)
    buffers = 3 * np.getbufsize() * wide  # einsum's iterator buffers: one per operand
    if pass_name is Pass.FORWARD:
        total = max(convert_and_pad, input_alive + 2 * wide * outputs,
                    input_alive + wide * outputs + itemsize * outputs)
    elif pass_name is Pass.INPUT:
        total = grad + wide * padded_inputs + max(taps_windows, itemsize * inputs)
    else:
        total = max(convert_and_pad, input_alive + grad + taps_windows) + (wide + itemsize) * weights
    return total + wide * weights + buffers


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
