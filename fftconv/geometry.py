"""The one place that validates a convolution's shapes, and derives every shape the algorithms use.

Every algorithm (``"fft"``, ``"im2col"``, ``"direct"``) and every pass (forward, input gradient, weight gradient)
receives a :class:`ConvGeometry` built here from the array shapes and a :class:`~fftconv.params.ConvParams` (the
hyper-parameters, validated there). Nothing downstream re-derives shapes or re-checks arguments.

Conventions follow ``torch.nn.functional.convNd``: channels-first arrays ``(batch, channels, *spatial)``, weights
``(out_channels, in_channels // groups, *kernel)``, cross-correlation, and output size
``floor((n + p_before + p_after - d * (k - 1) - 1) / s) + 1`` per spatial dimension.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .params import ConvParams, IntOrTuple, Padding, _expand, _require_positive  # noqa: F401  (fftconv.nn uses them)

#: dtypes every algorithm supports end to end; the output dtype equals the input dtype.
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class ConvGeometry:
    """Validated shapes and hyper-parameters of one N-dimensional convolution layer.

    Build it with :meth:`from_shapes` (hyper-parameters as the functional API takes them) or :meth:`from_params`
    (a :class:`~fftconv.params.ConvParams` validated earlier, as layers do); the constructor trusts its arguments.

    Attributes
    ----------
    batch, in_channels, out_channels, groups : int
        ``S``, ``f``, ``f'`` and the number of channel groups.
    input_shape, kernel_shape, stride, dilation, padding_before, padding_after : tuple of int
        Per spatial dimension.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 3, 32, 32), (16, 3, 5, 5), padding=2, stride=2)
    >>> g.output_shape
    (16, 16)
    >>> g.full_output_shape
    (8, 16, 16, 16)
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding_before: tuple[int, ...]
    padding_after: tuple[int, ...]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_shapes(
        cls,
        input_shape: Sequence[int],
        weight_shape: Sequence[int],
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        *,
        input_name: str = "input",
        weight_name: str = "weight",
    ) -> "ConvGeometry":
        """Validate full array shapes and hyper-parameters; raise an error naming the argument on any mismatch."""
        input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
        _check_ranks(input_shape, weight_shape, input_name, weight_name)
        params = ConvParams.create(len(weight_shape) - 2, stride, padding, dilation, groups)
        return cls.from_params(params, input_shape, weight_shape, input_name=input_name, weight_name=weight_name)

    @classmethod
    def from_params(
        cls,
        params: ConvParams,
        input_shape: Sequence[int],
        weight_shape: Sequence[int],
        *,
        input_name: str = "input",
        weight_name: str = "weight",
    ) -> "ConvGeometry":
        """Combine validated hyper-parameters with the array shapes of one call; raise naming the argument.

        Examples
        --------
        >>> params = ConvParams.create(2, padding="same")
        >>> ConvGeometry.from_params(params, (1, 3, 9, 9), (4, 3, 4, 4)).padding_after
        (2, 2)
        """
        input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
        _check_ranks(input_shape, weight_shape, input_name, weight_name)
        if len(weight_shape) - 2 != params.ndim:
            raise ValueError(f"{weight_name} has {len(weight_shape) - 2} spatial dimensions but the convolution has "
                             f"{params.ndim}; got shape {weight_shape}")
        groups = params.groups
        batch, in_channels = input_shape[:2]
        out_channels, channels_per_group = weight_shape[:2]
        kernel = tuple(weight_shape[2:])
        _check_not_empty(input_shape, weight_shape, input_name, weight_name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide both in_channels={in_channels} ({input_name}.shape[1]) "
                             f"and out_channels={out_channels} ({weight_name}.shape[0])")
        if channels_per_group * groups != in_channels:
            raise ValueError(f"{weight_name}.shape[1]={channels_per_group} times groups={groups} must equal the "
                             f"{in_channels} channels of {input_name} (shape {input_shape}); expected "
                             f"{weight_name}.shape[1] == {in_channels // groups}")
        before, after = params.padding_for(kernel)
        geometry = cls(int(batch), int(in_channels), int(out_channels), groups, tuple(int(n) for n in input_shape[2:]),
                       tuple(int(k) for k in kernel), params.stride, params.dilation, before, after)
        geometry._check_kernel_fits(input_name)
        return geometry

    def _check_kernel_fits(self, input_name: str) -> None:
        padded = self.padded_input_shape
        if any(kd > p for kd, p in zip(self.dilated_kernel_shape, padded)):
            raise ValueError(f"kernel of size {self.kernel_shape} (dilated to {self.dilated_kernel_shape}) is larger "
                             f"than the padded {input_name} of spatial size {padded} (input {self.input_shape}, "
                             f"padding {self.padding_before}/{self.padding_after}); use a smaller kernel or dilation, "
                             "or more padding")

    # ------------------------------------------------------------------ derived shapes
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.input_shape)

    @property
    def dilated_kernel_shape(self) -> tuple[int, ...]:
        """Extent of the kernel once dilated: ``d * (k - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_shape, self.dilation))

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Spatial output size, PyTorch's formula."""
        return tuple((p - kd) // s + 1 for p, kd, s in zip(self.padded_input_shape, self.dilated_kernel_shape,
                                                             self.stride))

    @property
    def padded_input_shape(self) -> tuple[int, ...]:
        """Spatial size of the zero-padded input, ``n + p_before + p_after``."""
        return tuple(n + b + a for n, b, a in zip(self.input_shape, self.padding_before, self.padding_after))

    @property
    def full_padded_input_shape(self) -> tuple[int, ...]:
        """``(S, f, *padded_input_shape)``."""
        return (self.batch, self.in_channels, *self.padded_input_shape)

    @property
    def full_input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.input_shape)

    @property
    def full_weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_shape)

    @property
    def full_output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.output_shape)

    @property
    def receptive_extent(self) -> tuple[int, ...]:
        """Extent ``L = (m - 1) * s + d * (k - 1) + 1`` of the padded input that some output reads."""
        return tuple((m - 1) * s + kd for m, s, kd in zip(self.output_shape, self.stride, self.dilated_kernel_shape))

    @property
    def used_input_shape(self) -> tuple[int, ...]:
        """Leading part of the (unpadded) input that any output reads; strides can leave a tail unread."""
        return tuple(max(0, min(n, extent - b)) for n, extent, b in zip(self.input_shape, self.receptive_extent,
                                                                         self.padding_before))

    @property
    def minimal_fft_shape(self) -> tuple[int, ...]:
        """Smallest circular size per dimension at which every kept coefficient of all three passes is exact.

        The input is transformed unpadded; leading padding becomes a cyclic shift of the result (the ``before``
        rows land at the end of the cyclic buffer, which must then hold zeros). That needs
        ``N >= n_used + p_before`` for the shifted reads and ``N >= L - p_before`` for the last read. Kernel taps
        or upsampled output-gradient entries that wrap around are summed into the buffer (aliasing), which is exact
        for the kept coefficients under the same two conditions.
        """
        return tuple(max(n_used + b, extent - b, 1) for n_used, b, extent in zip(
            self.used_input_shape, self.padding_before, self.receptive_extent))

    # ------------------------------------------------------------------ gradient-pass validation
    def check_grad_output(self, grad_output_shape: Sequence[int], name: str = "grad_output") -> None:
        """Raise if ``grad_output`` does not have the shape this geometry's forward pass produces."""
        if tuple(grad_output_shape) != self.full_output_shape:
            raise ValueError(f"{name} has shape {tuple(grad_output_shape)}, but the convolution of an input of shape "
                             f"{self.full_input_shape} with a weight of shape {self.full_weight_shape} (stride "
                             f"{self.stride}, padding {self.padding_before}/{self.padding_after}, dilation "
                             f"{self.dilation}) produces {self.full_output_shape}; check input_size / weight_size")

    def __repr__(self) -> str:
        parts = [f"input={self.full_input_shape}", f"weight={self.full_weight_shape}",
                 f"output={self.full_output_shape}"]
        for name, value, default in (("stride", self.stride, 1), ("dilation", self.dilation, 1)):
            if any(v != default for v in value):
                parts.append(f"{name}={value}")
        if any(self.padding_before) or any(self.padding_after):
            parts.append(f"padding={self.padding_before}/{self.padding_after}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        return f"ConvGeometry({', '.join(parts)})"


def _check_not_empty(input_shape: tuple, weight_shape: tuple, input_name: str, weight_name: str) -> None:
    """A batch of zero samples is a convolution (of nothing, as in PyTorch); zero channels or sizes are refused."""
    shapes = f"{input_name} shape {input_shape}, {weight_name} shape {weight_shape}"
    if any(v < 0 for v in (*input_shape, *weight_shape)):
        raise ValueError(f"sizes must be non-negative: {shapes}")
    if min(input_shape[1], *weight_shape[:2]) == 0:
        raise ValueError(f"a convolution needs at least one input and one output channel: {shapes} (PyTorch refuses "
                         "zero output channels, and gives a result without the output channels for zero input "
                         "channels)")
    if min(*input_shape[2:], *weight_shape[2:]) == 0:
        raise ValueError(f"spatial sizes must be positive: {shapes}")


def _check_ranks(input_shape: tuple, weight_shape: tuple, input_name: str, weight_name: str) -> None:
    if len(weight_shape) < 3:
        raise ValueError(f"{weight_name} must have shape (out_channels, in_channels/groups, *kernel) with at "
                         f"least one spatial dimension, got shape {weight_shape}")
    ndim = len(weight_shape) - 2
    if len(input_shape) != ndim + 2:
        raise ValueError(f"{input_name} must have {ndim + 2} dimensions (batch, channels, {ndim} spatial) to match "
                         f"{weight_name} of shape {weight_shape}, got shape {input_shape}; add a batch axis with "
                         "x[None] if you passed a single sample")


def parse_shape(shape: Sequence[int], name: str) -> tuple[int, ...]:
    """A shape argument as a tuple of ints; floats and non-sequences raise ``TypeError`` naming the argument.

    Examples
    --------
    >>> parse_shape([2, np.int64(3)], "input_shape")
    (2, 3)
    """
    try:  # operator.index accepts Python and numpy ints but not floats: 8.5 must not become 8
        return tuple(operator.index(v) for v in shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from None


def parse_size(size: Sequence[int], expected_ndim: int, name: str) -> tuple[int, ...]:
    """Validate an ``input_size`` / ``weight_size`` argument of a gradient pass."""
    try:
        values = tuple(operator.index(v) for v in size)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {expected_ndim} ints, got {size!r}") from None
    if len(values) != expected_ndim:
        raise ValueError(f"{name} must have {expected_ndim} entries (batch, channels, spatial...), got {values}")
    return values


def parse_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy dtype fftconv supports; anything else raises ``TypeError`` naming the argument.

    Examples
    --------
    >>> parse_dtype("float32")
    dtype('float32')
    """
    try:
        if dtype is None:  # np.dtype(None) would silently mean float64
            raise TypeError
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}={dtype!r} is not a dtype; fftconv supports float32 and float64") from None
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}={resolved} is not supported; fftconv supports float32 and float64")
    return resolved


def _byte_order_note(dtype: np.dtype) -> str:
    return "" if dtype.isnative else f" (byte-swapped {dtype.newbyteorder('=')})"


def cast_hint(dtype: np.dtype, name: str) -> str:
    """How to convert an array of an unsupported ``dtype`` without losing what it holds.

    Examples
    --------
    >>> cast_hint(np.dtype(">f8"), "x"), cast_hint(np.dtype(np.int64), "x")
    ('Convert it to native byte order with x.astype(np.float64)', 'Convert explicitly, e.g. x.astype(np.float64)')
    >>> cast_hint(np.dtype(np.complex64), "x")
    'fftconv convolves real arrays: convolve x.real and x.imag separately'
    """
    native = dtype.newbyteorder("=")
    if native in SUPPORTED_DTYPES:
        return f"Convert it to native byte order with {name}.astype(np.{native})"
    if dtype.kind == "c":
        return f"fftconv convolves real arrays: convolve {name}.real and {name}.imag separately"
    if dtype.kind == "f" and dtype.itemsize > 8:
        return f"Convert explicitly with {name}.astype(np.float64), the widest float fftconv supports"
    # float32 holds float16, bool and integers of up to 16 bits exactly; wider integers need float64
    exact_in_float32 = dtype.kind in "fb" or (dtype.kind in "iu" and dtype.itemsize <= 2)
    return f"Convert explicitly, e.g. {name}.astype(np.{'float32' if exact_in_float32 else 'float64'})"


def check_arrays(**arrays: np.ndarray) -> np.dtype:
    """Check that the named arrays are ndarrays of one supported float dtype; return it.

    Integer, complex, half and mixed dtypes raise ``TypeError`` naming the offending argument: converting silently
    would either lose precision or hide a bug in the caller.
    """
    dtype = None
    first = None
    for name, array in arrays.items():
        if array is None:
            continue
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}; wrap it with np.asarray")
        if array.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} has dtype {array.dtype}{_byte_order_note(array.dtype)}; fftconv supports float32 "
                            f"and float64. {cast_hint(array.dtype, name)}")
        if dtype is None:
            dtype, first = array.dtype, name
        elif array.dtype != dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but {first} has dtype {dtype}; mixed precision is not "
                            "supported, cast both to the same float dtype")
    assert dtype is not None, "check_arrays needs at least one array"
    return dtype
