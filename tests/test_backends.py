"""FFT backends: each against numpy.fft in float64, dtype preservation, ``out=``, pyFFTW's plan cache, settings and
wisdom, the global default (``set_backend`` / ``get_backend``) and the transform counts of CountingBackend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fftconv
from fftconv import backends
from fftconv.backends import base, blocks
from conftest import assert_close, tolerance
from counting_backend import CountingBackend

BACKENDS = fftconv.available_backends()
COMPLEX = {np.dtype(np.float32): np.dtype(np.complex64), np.dtype(np.float64): np.dtype(np.complex128)}
needs_pyfftw = pytest.mark.skipif("pyfftw" not in BACKENDS, reason="pyFFTW is not installed")


def fresh(name: str, threads: int = 1):
    """A private instance (quick planning) so tests never share plan caches or settings.

    With ``threads > 1`` the pyfftw and scipy backends cut calls into chunks run on fftconv's pool; 3 threads on
    axes of 3-6 entries make uneven chunks whose data is not SIMD-aligned.
    """
    if name == "pyfftw":
        return fftconv.PyfftwBackend(threads=threads, planner_effort="FFTW_ESTIMATE")
    if name == "ducc0":
        return backends.Ducc0Backend(threads=threads)
    return fftconv.ScipyBackend(workers=threads) if name == "scipy" else fftconv.NumpyBackend()


@pytest.fixture
def restore_global_backend():
    """Save and restore the module's default-backend state, which set_backend / configure_* change."""
    saved = (base._default, dict(base._instances))
    yield
    base._default = saved[0]
    base._instances.clear()
    base._instances.update(saved[1])


# (input shape, transform size, axes): odd and even sizes, zero padding, leading and trailing axes, 1 to 3 axes
TRANSFORMS = {
    "1d-odd-last": ((3, 7), (7,), (1,)),
    "1d-even-padded-first": ((6, 4), (10,), (0,)),
    "2d-padded-leading": ((5, 6, 2), (9, 6), (0, 1)),
    "2d-negative-axes": ((2, 5, 5), (5, 8), (-2, -1)),
    "3d-odd-last": ((4, 5, 6, 3), (4, 5, 7), (0, 1, 2)),
}


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("name", BACKENDS)
def test_rfftn_and_irfftn_match_numpy(name, transform, dtype, threads, rng):
    shape, size, axes = TRANSFORMS[transform]
    backend = fresh(name, threads)
    x = rng.standard_normal(shape).astype(dtype)
    tol = tolerance(dtype, math.prod(size), 1)

    spectrum = backend.rfftn(x, size, axes)
    expected = np.fft.rfftn(x.astype(np.float64), s=size, axes=axes)
    assert spectrum.dtype == COMPLEX[np.dtype(dtype)]
    assert_close(spectrum, expected, tol, "rfftn")

    reference_spectrum = expected.astype(spectrum.dtype)
    kept = reference_spectrum.copy()
    inverse = backend.irfftn(reference_spectrum, size, axes)
    assert inverse.dtype == np.dtype(dtype)
    assert_close(inverse, np.fft.irfftn(kept.astype(np.complex128), s=size, axes=axes), tol, "irfftn")
    np.testing.assert_array_equal(reference_spectrum, kept, err_msg="irfftn destroyed its input by default")

    # round trip: the input, zero-padded at the end of each transformed axis
    padded = np.zeros(inverse.shape)
    padded[tuple(slice(0, n) for n in x.shape)] = x
    assert_close(backend.irfftn(backend.rfftn(x, size, axes), size, axes), padded, tol, "round trip")


@pytest.mark.parametrize("name", BACKENDS)
def test_strided_input_and_fresh_outputs(name, rng):
    """Views are read through their strides, and each call returns a new array (no shared plan buffer)."""
    backend = fresh(name)
    base = rng.standard_normal((8, 6, 5))
    view = base.transpose(2, 0, 1)[:, ::2]  # (5, 4, 6), not contiguous
    first = backend.rfftn(view, (4, 6), (1, 2))
    snapshot = first.copy()
    second = backend.rfftn(2 * view, (4, 6), (1, 2))
    assert first is not second and not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, snapshot, err_msg="a later call overwrote an earlier result")
    assert_close(first, np.fft.rfftn(view, s=(4, 6), axes=(1, 2)), tolerance(np.float64, 24))
    inverse_1 = backend.irfftn(first, (4, 6), (1, 2))
    inverse_2 = backend.irfftn(second, (4, 6), (1, 2))
    assert not np.shares_memory(inverse_1, inverse_2)
    assert_close(inverse_1, view, tolerance(np.float64, 24))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", BACKENDS)
def test_rfftn_writes_into_out(name, dtype, threads, rng):
    backend = fresh(name, threads)
    x = rng.standard_normal((3, 6, 5)).astype(dtype)
    expected = np.fft.rfftn(x.astype(np.float64), s=(7, 5), axes=(1, 2))
    complex_dtype = COMPLEX[np.dtype(dtype)]
    tol = tolerance(dtype, 35)

    out = np.full((3, 7, 3), np.nan, dtype=complex_dtype)
    assert backend.rfftn(x, (7, 5), (1, 2), out=out) is out
    assert_close(out, expected, tol, "contiguous out")

    # a transposed view, as the frequency-major workspaces use: written through its strides
    storage = np.full((7, 3, 3), np.nan, dtype=complex_dtype)
    view = storage.transpose(2, 0, 1)
    assert backend.rfftn(x, (7, 5), (1, 2), out=view) is view
    assert_close(storage.transpose(2, 0, 1), expected, tol, "strided out")
    # ... and read back through the same strides by the inverse (destroying it is allowed)
    inverse = backend.irfftn(view, (7, 5), (1, 2), overwrite_input=True)
    assert_close(inverse[:, :6], x, tolerance(dtype, 35), "inverse of a strided spectrum")


@needs_pyfftw
@pytest.mark.parametrize("strided_max", [0, 1 << 30], ids=["staged", "direct"])
@pytest.mark.parametrize("stage_maps", [1, 3, 100], ids=["map by map", "partial rows", "one block"])
def test_pyfftw_staged_transform_into_a_frequency_major_view(stage_maps, strided_max, monkeypatch, rng):
    """Strided outputs are written block by block, through a stage buffer or (small maps) straight through the
    strides: every map lands in its place, including the partial blocks at the edges, from a reversed
    (negative-stride) input that needs zero padding."""
    monkeypatch.setattr(blocks, "STAGE_BYTES", stage_maps * 7 * 3 * 16)  # complex128 maps of 7 x 3 bins
    monkeypatch.setattr(backends.pyfftw, "STAGE_MIN_BYTES", 1)
    monkeypatch.setattr(backends.pyfftw, "STRIDED_MAX_BYTES", strided_max)
    backend = fresh("pyfftw", threads=3)
    maps = rng.standard_normal((5, 2, 4, 6, 4))[..., ::-1, ::-1]  # (rows, groups, cols, *space), flipped
    storage = np.full((7, 3, 2, 5, 4), np.nan, dtype=np.complex128)  # (*bins, groups, rows, cols)
    view = storage.transpose(3, 2, 4, 0, 1)
    assert backend.rfftn(maps, (7, 5), (3, 4), out=view) is view
    assert_close(view, np.fft.rfftn(maps, s=(7, 5), axes=(3, 4)), tolerance(np.float64, 35), "staged out")
    cut = blocks.stage_blocks(view.shape, view.strides, (3, 4), blocks.STAGE_BYTES // 16)
    assert len(cut) == {1: 40, 3: 20, 100: 1}[stage_maps]


@needs_pyfftw
@pytest.mark.parametrize("strided_max", [0, 1 << 30], ids=["gathered", "in place"])
def test_pyfftw_blocked_inverse_reads_small_maps_in_place(strided_max, monkeypatch, rng):
    """The blocked inverse reads each block through the spectrum's strides (maps of at most STRIDED_MAX_BYTES) or
    gathers it into a compact buffer first: the same maps either way, also from blocks whose start is not
    SIMD-aligned; in place, no plan ever copies its input."""
    monkeypatch.setattr(blocks, "STAGE_BYTES", 3 * 7 * 3 * 16)  # three complex128 maps of 7 x 3 bins per block
    monkeypatch.setattr(backends.pyfftw, "STRIDED_MAX_BYTES", strided_max)
    backend = fresh("pyfftw", threads=3)
    maps = rng.standard_normal((5, 2, 4, 7, 5))  # (rows, groups, cols, *space)
    storage = np.empty((7, 3, 2, 5, 4), dtype=np.complex128)  # (*bins, groups, rows, cols)
    spectrum = storage.transpose(3, 2, 4, 0, 1)
    spectrum[...] = np.fft.rfftn(maps, axes=(3, 4))
    result = np.full(maps.shape, np.nan)
    backend.irfftn_blocks(spectrum, (7, 5), (3, 4), lambda block, block_maps: result.__setitem__(block, block_maps))
    assert_close(result, maps * 35, tolerance(np.float64, 35), "blocked inverse")
    staged = [backend._plans.get(key) for key in backend._plans.keys() if key[0] == "staged"]
    assert staged and all((plan.in_buffer is None) == bool(strided_max) for plan in staged)


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "counting"])
@pytest.mark.parametrize("stage_maps", [1, 3, 100], ids=["map by map", "partial rows", "one block"])
@pytest.mark.parametrize("lead", [(5, 2, 4), (1, 1, 7)], ids=["rows shared", "one row"])
@pytest.mark.parametrize("name", BACKENDS)
def test_irfftn_blocks_hands_every_map_over_once(name, lead, stage_maps, wrapped, monkeypatch, rng):
    """The blocked inverse of a frequency-major spectrum: the blocks tile the maps exactly, and each block's maps
    are the unnormalised inverse (numpy has no blocked method and takes the shared one; CountingBackend passes the
    blocks through and counts the maps). With one row, the threads share the columns instead."""
    monkeypatch.setattr(blocks, "STAGE_BYTES", stage_maps * 7 * 3 * 16)  # complex128 spectra of 7 x 3 bins
    backend = fresh(name, threads=3)
    if wrapped:
        backend = CountingBackend(backend)
    maps = rng.standard_normal((*lead, 7, 5))  # (rows, groups, cols, *space)
    expected = np.fft.irfftn(np.fft.rfftn(maps, axes=(3, 4)), s=(7, 5), axes=(3, 4)) * 35
    rows, groups, cols = lead
    storage = np.empty((7, 3, groups, rows, cols), dtype=np.complex128)  # (*bins, groups, rows, cols)
    spectrum = storage.transpose(3, 2, 4, 0, 1)
    result, handed = np.full(maps.shape, np.nan), np.zeros(maps.shape[:3], int)

    def consume(block, block_maps):
        result[block] = block_maps
        handed[block[:3]] += 1

    spectrum[...] = np.fft.rfftn(maps, axes=(3, 4))
    backend.irfftn_blocks(spectrum, (7, 5), (3, 4), consume)
    assert (handed == 1).all()
    assert_close(result, expected, tolerance(np.float64, 35), "blocked inverse")
    if wrapped:
        assert backend.inverse_maps == math.prod(lead)
    with pytest.raises(ValueError, match=r"spectrum has shape .*; irfftn to size \(8, 5\) over axes \(3, 4\) needs"):
        backend.irfftn_blocks(spectrum, (8, 5), (3, 4), consume)


@pytest.mark.parametrize("name", BACKENDS)
def test_out_of_wrong_shape_or_dtype_is_rejected(name):
    backend = fresh(name)
    x = np.zeros((3, 6, 5))
    with pytest.raises(ValueError, match=r"out has shape \(3, 7, 5\) and dtype complex128; the transform needs "
                                         r"shape \(3, 7, 3\) and dtype complex128"):
        backend.rfftn(x, (7, 5), (1, 2), out=np.zeros((3, 7, 5), np.complex128))
    with pytest.raises(ValueError, match=r"out has shape \(3, 7, 3\) and dtype complex64; .* dtype complex128"):
        backend.rfftn(x, (7, 5), (1, 2), out=np.zeros((3, 7, 3), np.complex64))


# ---------------------------------------------------------------------- pyFFTW
@needs_pyfftw
def test_pyfftw_plans_are_built_once_per_layout(rng):
    backend = fresh("pyfftw")
    assert backend.cached_plans == 0
    x = rng.standard_normal((4, 6, 5))
    first = backend.rfftn(x, (6, 5), (1, 2))
    assert backend.cached_plans == 1
    second = backend.rfftn(rng.standard_normal((4, 6, 5)), (6, 5), (1, 2))  # same shape: no new plan
    assert backend.cached_plans == 1 and first is not second
    backend.irfftn(first, (6, 5), (1, 2))
    assert backend.cached_plans == 2  # the inverse is a plan of its own
    backend.irfftn(second, (6, 5), (1, 2))
    assert backend.cached_plans == 2
    backend.rfftn(x, (8, 5), (1, 2))  # another size
    backend.rfftn(x.astype(np.float32), (6, 5), (1, 2))  # another dtype
    assert backend.cached_plans == 4
    backend.clear()
    assert backend.cached_plans == 0


@needs_pyfftw
def test_pyfftw_convolution_reuses_plans(rng):
    """A second convolution of the same geometry builds no new plan."""
    backend = fresh("pyfftw")
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))
    y = fftconv.conv2d(x, w, padding=1, backend=backend)
    built = backend.cached_plans
    assert built > 0
    y2 = fftconv.conv2d(x + 1, w, padding=1, backend=backend)
    assert backend.cached_plans == built
    assert_close(y2 - y, fftconv.conv2d(np.ones_like(x), w, padding=1, algo="direct"), tolerance(np.float64, 256, 27))


def _memory_after(function) -> int:
    """Bytes Python and numpy hold after ``function()`` that they did not hold before (traced, collected)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        function()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


@needs_pyfftw
def test_pyfftw_plan_cache_stays_within_its_byte_budget_over_many_shapes(rng):
    """200 input shapes, each with its own plans: the cache keeps what fits in ``cache_bytes`` (a plan is counted
    for its buffers and the arrays it keeps referenced), and the memory still held afterwards is about that much."""
    budget = 2 << 20
    backend = fftconv.PyfftwBackend(threads=1, cache_bytes=budget)
    w = rng.standard_normal((4, 3, 3, 3))
    shapes = [(2, 3, n, n) for n in range(8, 208)]

    def convolve_every_shape():
        for shape in shapes:
            fftconv.conv2d(np.ones(shape), w, backend=backend)

    held = _memory_after(convolve_every_shape)
    largest_plan = 4 * 208 * 208 * 16  # (2*3 maps at 208x208, complex128) referenced by one plan, a bound
    assert backend.cached_bytes <= budget + largest_plan
    assert held <= budget + largest_plan + (1 << 20), f"{held / 2**20:.1f} MiB still held after 200 shapes"
    assert 0 < backend.cached_plans < len(shapes)
    x = rng.standard_normal((2, 3, 9, 9))  # an evicted shape comes back: built again, and correct
    assert_close(fftconv.conv2d(x, w, backend=backend), fftconv.conv2d(x, w, algo="direct"),
                 tolerance(np.float64, 81, 27))


@needs_pyfftw
def test_pyfftw_plan_dropped_while_another_thread_runs_it_is_freed_when_that_call_ends(rng):
    """A plan evicted while a call is using it stays usable by that call, and is freed when the call ends."""
    import threading

    backend = fftconv.PyfftwBackend(threads=1, cache_bytes=0)  # every new plan evicts the previous ones
    spectrum = np.fft.rfftn(rng.standard_normal((3, 16, 16)), axes=(1, 2))
    expected = np.fft.irfftn(spectrum, (16, 16), axes=(1, 2)) * 256  # the blocked inverse may destroy its input
    inside, leave, results = threading.Event(), threading.Event(), []

    def slow_consumer(block, maps):
        inside.set()
        leave.wait(10)
        results.append(maps.copy())

    user = threading.Thread(target=backend.irfftn_blocks, args=(spectrum, (16, 16), (1, 2), slow_consumer))
    user.start()
    assert inside.wait(10)
    running = next(iter(backend._plans.values()))
    backend.rfftn(np.ones((2, 8, 8)), (8, 8), (1, 2))  # a new plan: the running one leaves the cache
    assert running not in set(backend._plans.values()) and running.plan is not None  # kept for its call
    leave.set()
    user.join()
    assert running.plan is None and not backend._retired  # freed once its call ended
    assert_close(results[0], expected, 1e-12)


def test_pyfftw_cache_bytes_is_validated():
    if "pyfftw" not in BACKENDS:
        pytest.skip("pyFFTW is not installed")
    with pytest.raises(ValueError, match="cache_bytes must be a non-negative int, got -1"):
        fftconv.PyfftwBackend(cache_bytes=-1)


@needs_pyfftw
@pytest.mark.parametrize("effort", ["FFTW_ESTIMATE", "FFTW_MEASURE"])
def test_pyfftw_threads_and_planner_effort_are_honoured(monkeypatch, effort, rng):
    """The settings reach every FFTW plan; FFTW_MEASURE plans (which scribble on their arrays) stay correct.

    ``threads=2`` cuts each call into two chunks with single-threaded plans of their own (no OpenMP threads).
    """
    import pyfftw

    built = []
    real_fftw = pyfftw.FFTW

    def recording_fftw(*args, **kwargs):
        plan = real_fftw(*args, **kwargs)
        built.append((kwargs.get("threads"), plan.flags))
        return plan

    monkeypatch.setattr(pyfftw, "FFTW", recording_fftw)
    backend = fftconv.PyfftwBackend(threads=2, planner_effort=effort)
    assert (backend.threads, backend.planner_effort) == (2, effort)
    x = rng.standard_normal((3, 10, 6))
    kept = x.copy()
    spectrum = backend.rfftn(x, (12, 6), (1, 2))
    np.testing.assert_array_equal(x, kept, err_msg="planning or executing modified the input")
    assert_close(spectrum, np.fft.rfftn(kept, s=(12, 6), axes=(1, 2)), tolerance(np.float64, 72))
    assert_close(backend.irfftn(spectrum, (12, 6), (1, 2))[:, :10], kept, tolerance(np.float64, 72))
    assert len(built) == 4, "expected two forward and two inverse chunk plans, built with pyfftw.FFTW"
    for threads, flags in built:
        assert threads == 1 and effort in flags


@needs_pyfftw
def test_pyfftw_settings_are_validated(monkeypatch):
    with pytest.raises(ValueError, match=r"planner_effort must be one of \('FFTW_ESTIMATE', 'FFTW_MEASURE', "
                                         r"'FFTW_PATIENT', 'FFTW_EXHAUSTIVE'\), got 'FFTW_FAST'"):
        fftconv.PyfftwBackend(planner_effort="FFTW_FAST")
    for threads in (0, -1):
        with pytest.raises(ValueError, match=f"threads must be a positive int, got {threads}"):
            fftconv.PyfftwBackend(threads=threads)
    with pytest.raises(ValueError, match="planner_effort must be one of"):
        fftconv.configure_pyfftw(planner_effort="measure")
    monkeypatch.setenv("FFTCONV_THREADS", "3")
    assert fftconv.PyfftwBackend().threads == 3 and fftconv.ScipyBackend().workers == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("FFTCONV_THREADS", bad)
        with pytest.raises(ValueError, match=f"FFTCONV_THREADS must be a positive integer, got '{bad}'"):
            fftconv.PyfftwBackend()


@needs_pyfftw
def test_wisdom_round_trip(tmp_path):
    """Wisdom exported to a file and imported after FFTW forgot everything lets FFTW plan with FFTW_WISDOM_ONLY
    (which refuses to plan without wisdom for exactly that transform)."""
    import pyfftw

    def plan(flags):
        return pyfftw.FFTW(pyfftw.empty_aligned((4, 12)), pyfftw.empty_aligned((4, 7), dtype=np.complex128),
                           axes=(1,), flags=flags, threads=1)

    plan(("FFTW_MEASURE",))
    path = tmp_path / "fftw.wisdom"
    fftconv.export_wisdom(path)
    assert path.stat().st_size > 0
    pyfftw.forget_wisdom()
    with pytest.raises(RuntimeError):
        plan(("FFTW_MEASURE", "FFTW_WISDOM_ONLY"))
    assert fftconv.import_wisdom(path) == (True, True, True)
    plan(("FFTW_MEASURE", "FFTW_WISDOM_ONLY"))


# ---------------------------------------------------------------------- choosing a backend
def test_named_backends_are_shared_instances():
    for name in BACKENDS:
        backend = fftconv.get_backend(name)
        assert backend.name == name and fftconv.get_backend(name) is backend
        assert isinstance(backend, fftconv.FFTBackend)


@pytest.mark.usefixtures("restore_global_backend")
def test_set_backend_by_name_and_none_restores_default(monkeypatch):
    monkeypatch.delenv("FFTCONV_BACKEND", raising=False)
    builtin_default = fftconv.get_backend().name
    # measured fastest in the pipeline (paper_figures/defaults/); scipy where pyFFTW is not installed
    assert builtin_default == ("pyfftw" if "pyfftw" in BACKENDS else "scipy")
    fftconv.set_backend("numpy")
    assert fftconv.get_backend().name == "numpy" and fftconv.get_backend() is fftconv.get_backend("numpy")
    fftconv.set_backend(None)
    assert fftconv.get_backend().name == builtin_default
    monkeypatch.setenv("FFTCONV_BACKEND", "numpy")  # the environment picks the default when none was set
    assert fftconv.get_backend().name == "numpy"
    monkeypatch.setenv("FFTCONV_BACKEND", "fftw")
    with pytest.raises(ValueError, match=r"FFTCONV_BACKEND='fftw' is not a backend fftconv knows; valid values: "
                                         r"\['ducc0', 'numpy', 'pyfftw', 'scipy'\]"):
        fftconv.get_backend()


@pytest.mark.usefixtures("restore_global_backend")
def test_set_backend_rejects_unknown_names_and_keeps_the_old_default():
    fftconv.set_backend("numpy")
    with pytest.raises(ValueError, match=r"backend 'fftw' is unknown; valid names: "
                                         r"\['ducc0', 'numpy', 'pyfftw', 'scipy'\]"):
        fftconv.set_backend("fftw")
    with pytest.raises(TypeError, match="backend must be a name .*an FFTBackend instance or None, got 42"):
        fftconv.set_backend(42)
    assert fftconv.get_backend().name == "numpy"


@pytest.mark.usefixtures("restore_global_backend")
def test_set_backend_with_a_configured_instance(rng):
    instance = fresh("scipy")
    fftconv.set_backend(instance)
    assert fftconv.get_backend() is instance and fftconv.get_backend("scipy") is instance
    assert fftconv.configure_scipy(workers=1) is fftconv.get_backend("scipy")
    assert fftconv.get_backend("scipy").workers == 1


@pytest.mark.usefixtures("restore_global_backend")
def test_set_backend_with_a_custom_instance_is_used_by_convolutions(rng):
    counter = CountingBackend(fftconv.NumpyBackend())
    fftconv.set_backend(counter)
    assert fftconv.get_backend() is counter
    fftconv.conv2d(rng.standard_normal((1, 1, 5, 5)), rng.standard_normal((1, 1, 2, 2)))
    assert counter.forward_maps > 0


def test_per_call_backend_overrides_the_default(rng):
    counter = CountingBackend(fftconv.NumpyBackend())
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    assert_close(fftconv.conv2d(x, w, backend=counter), fftconv.conv2d(x, w, algo="direct"),
                 tolerance(np.float64, 64, 18))
    assert counter.forward_maps > 0


# ---------------------------------------------------------------------- CountingBackend
@pytest.mark.parametrize("groups", [1, 2])
def test_counting_backend_shows_each_map_transformed_once(groups, rng):
    """The paper's reuse: per pass, each input map, kernel and output-gradient map is transformed exactly once,
    and one inverse transform is made per result map (S*f' forward, S*f input gradient, f'*f/groups weights)."""
    S, f, f_out = 2, 6, 4
    x = rng.standard_normal((S, f, 9, 8))
    w = rng.standard_normal((f_out, f // groups, 3, 3))
    gy = rng.standard_normal((S, f_out, 7, 6))
    counter = CountingBackend(fftconv.NumpyBackend())
    kernels = f_out * f // groups
    expected = {
        "forward": (lambda: fftconv.conv2d(x, w, groups=groups, backend=counter), S * f + kernels, S * f_out),
        "input": (lambda: fftconv.conv2d_input(x.shape, w, gy, groups=groups, backend=counter),
                  S * f_out + kernels, S * f),
        "weight": (lambda: fftconv.conv2d_weight(x, w.shape, gy, groups=groups, backend=counter),
                   S * f + S * f_out, kernels),
    }
    for pass_name, (run, forward_maps, inverse_maps) in expected.items():
        counter.reset()
        run()
        assert (counter.forward_maps, counter.inverse_maps) == (forward_maps, inverse_maps), pass_name
        directions = [kind.removesuffix("_by_matrix") for kind, _ in counter.calls]  # kernels may go by DFT matrix
        assert directions == ["rfftn", "rfftn", "irfftn"], pass_name


def test_counting_backend_passes_results_through(rng):
    counter = CountingBackend(fftconv.NumpyBackend())
    x = rng.standard_normal((2, 3, 4, 5))
    spectrum = counter.rfftn(x, (4, 5), (2, 3))
    assert (counter.forward_maps, counter.calls) == (6, [("rfftn", (2, 3, 4, 5))])
    np.testing.assert_array_equal(spectrum, np.fft.rfftn(x, axes=(2, 3)))
    counter.irfftn(spectrum, (4, 5), (-2, -1))  # negative axes count the same maps
    assert counter.inverse_maps == 6 and counter.name == "counting[numpy]"
    counter.reset()
    assert (counter.forward_maps, counter.inverse_maps, counter.calls) == (0, 0, [])


def test_a_library_needs_only_rfftn_and_irfftn(rng):
    """The interface's shared implementations (blocked inverse, allocation, DFT-matrix transforms) serve a backend
    that defines only the two transforms; one that lacks a transform cannot be made."""

    class Minimal(backends.FFTBackend):
        name = "minimal"

        def rfftn(self, x, shape, axes, out=None):
            spectrum = np.fft.rfftn(x, s=shape, axes=axes)
            if out is None:
                return spectrum
            out[...] = spectrum
            return out

        def irfftn(self, spectrum, shape, axes, overwrite_input=False, normalise=True):
            return np.fft.irfftn(spectrum, s=shape, axes=axes, norm="backward" if normalise else "forward")

    class Incomplete(backends.FFTBackend):
        name = "incomplete"

        def rfftn(self, x, shape, axes, out=None):
            return np.fft.rfftn(x, s=shape, axes=axes)

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2))
    gy = rng.standard_normal((2, 4, 7, 7))
    for kernel_transform in ("fft", "gemm"):
        g = fftconv.ConvGeometry.from_shapes(x.shape, w.shape)
        plan = fftconv.SpectralPlan.create(g, np.float64, Minimal(), kernel_transform=kernel_transform)
        expected = fftconv.SpectralPlan.create(g, np.float64, "numpy", kernel_transform=kernel_transform)
        got = [plan.forward(plan.transform_input(x), plan.transform_weight(w)),
               plan.grad_weight(plan.transform_input(x), plan.transform_grad_output(gy))]
        want = [expected.forward(expected.transform_input(x), expected.transform_weight(w)),
                expected.grad_weight(expected.transform_input(x), expected.transform_grad_output(gy))]
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("restore_global_backend")
def test_scipy_workers_are_honoured(monkeypatch, rng):
    import scipy.fft

    seen = []
    for name in ("rfftn", "irfftn"):
        real = getattr(scipy.fft, name)
        monkeypatch.setattr(scipy.fft, name, lambda *a, _real=real, **k: seen.append(k["workers"]) or _real(*a, **k))
    backend = fftconv.ScipyBackend(workers=2)
    backend.irfftn(backend.rfftn(rng.standard_normal((3, 8)), (8,), (1,)), (8,), (1,))
    assert seen == [2, 2]
    assert fftconv.configure_scipy(workers=1).workers == 1


@pytest.mark.parametrize("name", BACKENDS)
def test_convolutions_in_several_threads_at_once_give_the_serial_results(name, rng):
    """Shared plans, workspaces and the pool must not mix up calls made concurrently from user threads."""
    from concurrent.futures import ThreadPoolExecutor

    backend = fftconv.get_backend(name)
    inputs = [rng.standard_normal((4, 6, 12, 12)) for _ in range(8)]
    w = rng.standard_normal((5, 6, 3, 3))
    serial = [fftconv.conv2d(x, w, padding=1, backend=backend) for x in inputs]
    with ThreadPoolExecutor(4) as users:
        for _ in range(5):
            parallel = list(users.map(lambda x: fftconv.conv2d(x, w, padding=1, backend=backend), inputs))
            for got, expected in zip(parallel, serial):
                np.testing.assert_array_equal(got, expected)


def _convolve_in_child(x, w, queue):
    queue.put(fftconv.conv2d(x, w))


def test_a_forked_child_can_convolve_after_its_parent(rng):
    """multiprocessing's fork start method copies the thread pool object but not its threads."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x, w = rng.standard_normal((8, 16, 24, 24)), rng.standard_normal((8, 16, 3, 3))
    expected = fftconv.conv2d(x, w)  # the parent's pool now exists and has threads
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_convolve_in_child, args=(x, w, queue))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
