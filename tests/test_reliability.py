"""Layers under misuse and concurrency, and the memory check under the limits a process can run with.

Oracles: an im2col twin of each layer (shares no spectral code), the float64 loops of ``tests/oracle.py``, layers
built afresh from the same seed, and, for the memory limits, fake ``/proc`` and ``/sys`` files or a real
``resource.setrlimit`` in a child process.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import oracle
from conftest import assert_close, relative_error, tolerance
import fftconv
from fftconv import _memory
from fftconv.nn import (SGD, Conv1d, Conv2d, Flatten, Linear, LocallyConnected2d, MaxPool2d, ReLU, Workspace,
                        default_workspace)

# Every way a convolution layer computes its passes.
CONV_MODES = {"fft-reuse": dict(algo="fft", memory="reuse"), "fft-recompute": dict(algo="fft", memory="recompute"),
              "im2col": dict(algo="im2col"), "direct": dict(algo="direct")}


# ---------------------------------------------------------------------- threads sharing the default workspace
def _train_against_im2col_twin(seed: int, barrier: threading.Barrier) -> float:
    """20 training steps of a recompute layer on the shared default workspace; worst relative gradient error
    against an im2col layer with the same weights, fed the same data in the same thread."""
    layer = Conv2d(8, 8, 5, padding=2, rng=seed, memory="recompute")
    twin = Conv2d(8, 8, 5, padding=2, rng=seed, algo="im2col")
    assert layer.workspace is default_workspace()
    data = np.random.default_rng(100 + seed)
    worst = 0.0
    barrier.wait()
    for _ in range(20):
        x = data.standard_normal((4, 8, 32, 32)).astype(np.float32)
        grad_output = data.standard_normal((4, 8, 32, 32)).astype(np.float32)
        for net in (layer, twin):
            net.zero_grad()
            net.forward(x)
        grad_input, twin_grad_input = layer.backward(grad_output), twin.backward(grad_output)
        worst = max(worst, relative_error(grad_input, twin_grad_input),
                    relative_error(layer.grad_weight, twin.grad_weight))
    return worst


def test_recompute_layers_training_in_two_threads_get_correct_gradients():
    """Two threads train their own recompute layers; both write their spectra into the one default workspace."""
    barrier = threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        worst = [f.result() for f in [pool.submit(_train_against_im2col_twin, seed, barrier) for seed in (0, 1)]]
    # float32, FFT of 36x36 points, weight gradient sums 4 * 32 * 32 terms: the model gives the 1e-5 cap. Buffers
    # overwritten by the other thread give errors of order 1.
    limit = tolerance(np.float32, fft_points=36 * 36, reduction_length=4 * 32 * 32)
    assert max(worst) <= limit, f"worst relative gradient error per thread {worst} > {limit:.1e}"


def _use_workspace_in_child(workspace: Workspace) -> None:
    layer = Conv1d(2, 3, 3, memory="recompute", workspace=workspace, dtype=np.float64, rng=0, backend="numpy")
    y = layer.forward(np.ones((1, 2, 8)))
    layer.backward(np.ones_like(y))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_can_use_a_workspace_a_parent_thread_holds():
    """A thread of the parent holds the workspace across the fork: the child must not wait for it forever."""
    workspace = Workspace()
    plan = fftconv.SpectralPlan.create(fftconv.ConvGeometry.from_shapes((1, 2, 8), (3, 2, 3)), np.float64, "numpy")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with workspace.borrow(plan):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        child = multiprocessing.get_context("fork").Process(target=_use_workspace_in_child, args=(workspace,))
        child.start()
        child.join(timeout=30)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
    finally:
        release.set()
        holder.join()
    assert not hung, "the forked child waited on a workspace held by a thread that does not exist in it"
    assert child.exitcode == 0


# ---------------------------------------------------------------------- reset_parameters keeps the arrays
LAYERS_WITH_PARAMETERS = {
    "conv2d": lambda seed: Conv2d(3, 4, 3, dtype=np.float64, rng=seed),
    "conv1d-nobias": lambda seed: Conv1d(2, 4, 3, bias=False, rng=seed),
    "linear": lambda seed: Linear(5, 3, dtype=np.float64, rng=seed),
    "locally-connected": lambda seed: LocallyConnected2d(2, 3, input_size=6, kernel_size=3, rng=seed),
}


@pytest.mark.parametrize("make", LAYERS_WITH_PARAMETERS.values(), ids=LAYERS_WITH_PARAMETERS.keys())
def test_reset_parameters_writes_in_place_so_an_existing_optimiser_keeps_working(make):
    layer = make(0)
    arrays = [parameter for parameter, _ in layer.parameters()]
    optimizer = SGD(layer.parameters(), lr=0.5)
    layer.reset_parameters(7)
    # the same objects, now holding the values a layer built with seed 7 starts from
    assert all(new is old for (new, _), old in zip(layer.parameters(), arrays))
    for (value, _), (expected, _) in zip(layer.parameters(), make(7).parameters()):
        np.testing.assert_array_equal(value, expected)
    for _, grad in layer.parameters():
        grad.fill(1)
    before = [parameter.copy() for parameter, _ in layer.parameters()]
    optimizer.step()
    for (parameter, _), old in zip(layer.parameters(), before):
        np.testing.assert_allclose(parameter, old - 0.5, rtol=1e-6)


def test_reset_parameters_refuses_a_parameter_rebound_to_another_shape():
    layer = Linear(5, 3, rng=0)
    layer.weight = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight has shape \(3, 4\), but the layer was built for \(3, 5\)"):
        layer.reset_parameters(1)


# ---------------------------------------------------------------------- arrays changed between forward and backward
@pytest.mark.parametrize("mode", CONV_MODES.values(), ids=CONV_MODES.keys())
def test_backward_uses_input_and_weight_as_they_were_at_forward(mode, rng):
    """An optimiser step (or any in-place change) between forward and backward does not reach backward."""
    hyper = dict(stride=2, padding=1, dilation=1, groups=2)
    layer = Conv2d(4, 6, 3, **hyper, dtype=np.float64, rng=0, **mode)
    x = rng.standard_normal((2, 4, 9, 9))
    weight = layer.weight.copy()
    y = layer.forward(x)
    grad_output = rng.standard_normal(y.shape)
    expected_input = oracle.grad_input(x.shape, weight, grad_output, **hyper)
    expected_weight = oracle.grad_weight(x, weight.shape, grad_output, **hyper)
    layer.weight -= 10 * rng.standard_normal(weight.shape)  # in place: what SGD.step does
    x *= -3
    grad_input = layer.backward(grad_output)
    # float64, FFT <= 16x16 points, sums of <= 2*5*5 terms: round-off is about 1e-14
    assert_close(grad_input, expected_input, 1e-12, "input gradient")
    assert_close(layer.grad_weight, expected_weight, 1e-12, "weight gradient")


def test_linear_backward_uses_the_input_as_it_was_at_forward(rng):
    layer = Linear(4, 3, dtype=np.float64, rng=0)
    x = rng.standard_normal((5, 4))
    expected = x.copy()
    layer.forward(x)
    x[:] = 0  # e.g. a data loader refilling its batch buffer
    grad_output = rng.standard_normal((5, 3))
    layer.backward(grad_output)
    np.testing.assert_allclose(layer.grad_weight, grad_output.T @ expected, rtol=1e-13)


# ---------------------------------------------------------------------- a refused backward can be retried
def _conv_case(mode):
    return (lambda: Conv2d(3, 4, 3, dtype=np.float64, rng=0, **mode)), (2, 3, 8, 8)


RETRY_CASES = {
    **{f"conv-{name}": _conv_case(mode) for name, mode in CONV_MODES.items()},
    "linear": ((lambda: Linear(6, 2, dtype=np.float64, rng=0)), (3, 6)),
    "locally-connected": ((lambda: LocallyConnected2d(2, 3, 6, 3, dtype=np.float64, rng=0)), (2, 2, 6, 6)),
    "relu": (ReLU, (2, 3, 4)),
    "flatten": (Flatten, (2, 3, 4)),
    "maxpool": ((lambda: MaxPool2d(2)), (1, 2, 6, 6)),
}


@pytest.mark.parametrize("make, shape", RETRY_CASES.values(), ids=RETRY_CASES.keys())
def test_backward_with_a_wrong_grad_output_shape_keeps_the_state_for_a_retry(make, shape, rng):
    layer, reference = make(), make()
    x = rng.standard_normal(shape)
    y = layer.forward(x)
    reference.forward(x)
    grad_output = rng.standard_normal(y.shape)
    wrong = np.zeros((y.shape[0] + 1, *y.shape[1:]))
    with pytest.raises(ValueError, match=r"grad_output has shape \(" + str(wrong.shape[0])):
        layer.backward(wrong)
    np.testing.assert_array_equal(layer.backward(grad_output), reference.backward(grad_output))
    for (_, grad), (_, expected) in zip(layer.parameters(), reference.parameters()):
        np.testing.assert_array_equal(grad, expected)  # the refused call added nothing
    with pytest.raises(RuntimeError, match="needs the state saved by forward"):
        layer.backward(grad_output)  # a successful backward consumes the state


@pytest.mark.parametrize("mode", CONV_MODES.values(), ids=CONV_MODES.keys())
def test_weight_rebound_to_another_kernel_size_is_named(mode):
    layer = Conv2d(3, 4, 3, dtype=np.float64, rng=0, **mode)
    x = np.ones((1, 3, 8, 8))
    y = layer.forward(x)
    layer.weight = np.ones((4, 3, 5, 5))
    message = r"weight has shape \(4, 3, 5, 5\), but the layer was built for \(4, 3, 3, 3\)"
    with pytest.raises(ValueError, match=message):
        layer.backward(np.ones_like(y))
    with pytest.raises(ValueError, match=message):
        layer.forward(x)  # the plan cached for this input shape was made for 3x3 kernels
    layer.weight = np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match="weight has dtype float32, but the layer was built with dtype=float64"):
        layer.forward(x)
    layer.weight = [[0.0]]
    with pytest.raises(TypeError, match="weight must be a numpy.ndarray of shape"):
        layer.forward(x)


def test_bias_rebound_or_removed_is_named():
    layer = Linear(3, 2, rng=0)
    layer.bias = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), but the layer was built for \(2,\)"):
        layer.forward(np.ones((1, 3), np.float32))
    no_bias = Conv1d(1, 1, 1, bias=False, rng=0)
    no_bias.bias = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="bias must stay None"):
        no_bias.forward(np.ones((1, 1, 4), np.float32))


@pytest.mark.parametrize("dtype, hint", [
    (">f8", r"dtype >f8 \(byte-swapped float64\) but the layer was built with dtype=float64; cast with "
            r"input.astype\(np.float64\)$"),
    ("float16", r"dtype float16 but the layer was built with dtype=float64; cast with input.astype\(np.float64\)$"),
    ("float32", r"cast with input.astype\(np.float64\) or build the layer with dtype=np.float32$"),
])
def test_layer_dtype_hint_names_only_dtypes_a_layer_can_have(dtype, hint):
    with pytest.raises(TypeError, match=hint):
        Conv2d(1, 1, 1, dtype=np.float64).forward(np.ones((1, 1, 2, 2), dtype=dtype))


# ---------------------------------------------------------------------- FFTCONV_MEMORY_LIMIT
X, W = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))


@pytest.mark.parametrize("text, nbytes", [("100000", 100000), ("1e9", 10**9), ("1GB", 10**9), ("512MiB", 2**29),
                                          ("1.5 gib", 3 * 2**29), ("64 kB", 64000), (" 2TiB ", 2 * 2**40)])
def test_memory_limit_accepts_bytes_and_units(monkeypatch, text, nbytes):
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", text)
    assert _memory.available_bytes() == nbytes
    assert fftconv.conv2d(X, W).shape == (2, 4, 6, 6)  # the small problem fits every one of these budgets


@pytest.mark.parametrize("text", ["-1", "1G", "lots", "1e999999", "nan", "1 2"])
def test_memory_limit_refuses_other_values_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", text)
    message = f"FFTCONV_MEMORY_LIMIT={text!r} is not a memory size: give a non-negative number of bytes"
    with pytest.raises(ValueError, match=re.escape(message) + ".*512MiB"):
        fftconv.conv2d(X, W)


def test_memory_limit_budget_refuses_a_problem_over_it(monkeypatch):
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", "1kB")
    with pytest.raises(MemoryError, match=r"only 0\.00 GiB is available; .*FFTCONV_MEMORY_LIMIT='1kB'"):
        fftconv.conv2d(X, W, algo="im2col")


# ---------------------------------------------------------------------- limits read from /proc, /sys and rlimits
GiB = 2**30


def fake_machine(monkeypatch, files: dict[str, str], rlimits: dict[str, int] | None = None) -> None:
    """Replace the files and resource limits ``_memory`` reads by ``files`` and ``rlimits``."""
    monkeypatch.delenv("FFTCONV_MEMORY_LIMIT", raising=False)
    files = {"/proc/meminfo": f"MemTotal: {64 * GiB // 1024} kB\nMemAvailable: {32 * GiB // 1024} kB\n", **files}
    monkeypatch.setattr(_memory, "_read_text", files.get)
    monkeypatch.setattr(_memory, "_soft_limit", (rlimits or {}).get)


def test_memory_available_from_meminfo_alone(monkeypatch):
    fake_machine(monkeypatch, {})
    assert _memory.headroom() == (32 * GiB, "MemAvailable in /proc/meminfo")


def test_memory_address_space_limit_counts_what_is_mapped(monkeypatch):
    fake_machine(monkeypatch, {"/proc/self/status": f"VmSize:\t{GiB // 1024} kB\nVmData:\t{GiB // 2048} kB\n"},
                 {"RLIMIT_AS": 3 * GiB, "RLIMIT_DATA": 8 * GiB})
    assert _memory.headroom() == (2 * GiB, "the RLIMIT_AS limit (ulimit) minus VmSize")


def test_memory_cgroup_v2_limit_at_an_ancestor_with_page_cache_counted_free(monkeypatch):
    root = "/sys/fs/cgroup"
    fake_machine(monkeypatch, {
        "/proc/self/cgroup": "0::/batch/job7\n",
        f"{root}/cgroup.controllers": "cpu memory\n",
        **{f"{root}{d}/cgroup.procs": "" for d in ("", "/batch", "/batch/job7")},
        f"{root}/batch/job7/memory.max": "max\n", f"{root}/batch/job7/memory.current": f"{GiB}\n",
        f"{root}/batch/memory.max": f"{4 * GiB}\n", f"{root}/batch/memory.current": f"{3 * GiB}\n",
        f"{root}/batch/memory.stat": f"anon {2 * GiB}\ninactive_file {GiB // 2}\n",
    })
    assert _memory.headroom() == (3 * GiB // 2, "the cgroup limit /sys/fs/cgroup/batch/memory.max")


def test_memory_cgroup_v1_limit_minus_usage(monkeypatch):
    group = "/sys/fs/cgroup/memory/docker/abc"
    fake_machine(monkeypatch, {
        "/proc/self/cgroup": "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n",
        f"{group}/cgroup.procs": "", "/sys/fs/cgroup/memory/cgroup.procs": "",
        f"{group}/memory.limit_in_bytes": f"{2 * GiB}\n", f"{group}/memory.usage_in_bytes": f"{GiB // 4}\n",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",  # the root: no limit
        "/sys/fs/cgroup/memory/memory.usage_in_bytes": f"{10 * GiB}\n",
    })
    assert _memory.headroom() == (7 * GiB // 4, f"the cgroup limit {group}/memory.limit_in_bytes")


def test_memory_cgroup_seen_from_inside_its_namespace(monkeypatch):
    """In a container /proc/self/cgroup names a path the container's mount does not show: the mount root is it."""
    fake_machine(monkeypatch, {
        "/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/cgroup.controllers": "memory\n",
        "/sys/fs/cgroup/cgroup.procs": "",
        "/sys/fs/cgroup/memory.max": f"{GiB}\n", "/sys/fs/cgroup/memory.current": f"{GiB // 2}\n",
    })
    assert _memory.headroom().nbytes == GiB // 2


def test_memory_error_names_the_limit_that_refused(monkeypatch):
    fake_machine(monkeypatch, {"/proc/self/status": "VmSize:\t1024 kB\n"}, {"RLIMIT_AS": 2**20 + 100})
    with pytest.raises(MemoryError, match=r"only 0\.00 GiB is available; .*\(the limit: the RLIMIT_AS limit"):
        _memory.check_fits(_memory.ALWAYS_FITS_BYTES, "this problem", "use less")


CHILD_UNDER_RLIMIT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import fftconv
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    mapped = int(status["VmSize"].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 2**30, resource.RLIM_INFINITY))
    zero = np.zeros((), np.float32)
    x = np.broadcast_to(zero, (16, 64, 512, 512))  # 1 GiB as one allocation: over the limit with the rest
    w = np.zeros((64, 64, 3, 3), np.float32)
    try:
        fftconv.conv2d(x, w, algo=sys.argv[1])
    except MemoryError as error:
        print(error)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("algo", ["fft", "im2col"])
def test_memory_check_sees_an_address_space_limit(algo):
    """Under ``ulimit -v`` a problem the machine could hold is refused by the check, not by numpy's allocator."""
    if (_memory.available_bytes() or 0) < 8 * GiB:
        pytest.skip("needs a machine with 8 GiB available, so that only the address-space limit refuses")
    env = {**os.environ, "FFTCONV_THREADS": "1"}
    env.pop("FFTCONV_MEMORY_LIMIT", None)
    child = subprocess.run([sys.executable, "-c", CHILD_UNDER_RLIMIT, algo], capture_output=True, text=True,
                           timeout=120, env=env, cwd=os.path.dirname(os.path.dirname(fftconv.__file__)))
    assert child.returncode == 0, child.stderr
    assert "GiB is available" in child.stdout and "RLIMIT_AS" in child.stdout, child.stdout + child.stderr


# ---------------------------------------------------------------------- every lock is fork-safe
def test_every_lock_of_the_package_is_made_fork_safe():
    """A lock made with ``threading.Lock()`` directly would stay held in a child forked while a parent thread held
    it; :func:`fftconv._parallel.fork_safe_lock` is the one place locks are made."""
    import ast
    import pathlib

    root = pathlib.Path(fftconv.__file__).parent
    direct = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore"):
                direct.append(f"{path.relative_to(root)}:{node.lineno}")
    # the two in fork_safe_lock itself (a Lock, or an RLock)
    assert len(direct) == 2 and all(place.startswith("_parallel.py:") for place in direct), direct


# ---------------------------------------------------------------------- NaN and inf with algo="fft"
GEOMETRY = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1)
X_SHAPE, W_SHAPE = (2, 3, 12, 12), (4, 3, 3, 3)


def _pass_call(pass_name: str, x, w, gy, **options):
    """One pass of the functional API on the given operands."""
    if pass_name == "forward":
        return fftconv.conv2d(x, w, **GEOMETRY, **options)
    if pass_name == "input":
        return fftconv.conv2d_input(x.shape, w, gy, **GEOMETRY, **options)
    return fftconv.conv2d_weight(x, w.shape, gy, **GEOMETRY, **options)


def _operands(rng, dtype=np.float64):
    x, w = rng.standard_normal(X_SHAPE).astype(dtype), rng.standard_normal(W_SHAPE).astype(dtype)
    gy = rng.standard_normal(fftconv.conv2d(x, w, **GEOMETRY, algo="direct").shape).astype(dtype)
    return {"input": x, "weight": w, "grad_output": gy}


# which operands each pass reads
PASS_OPERANDS = {"forward": ("input", "weight"), "input": ("weight", "grad_output"), "weight": ("input", "grad_output")}
BAD_CASES = [(p, name) for p, names in PASS_OPERANDS.items() for name in names]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("pass_name, name", BAD_CASES, ids=[f"{p}-{n}" for p, n in BAD_CASES])
def test_explicit_fft_refuses_non_finite_operands_naming_argument_count_and_fix(pass_name, name, value, rng):
    operands = _operands(rng)
    bad = operands[name]
    bad.flat[[3, 17, bad.size // 2]] = value  # 3 values well inside what every pass reads
    message = (rf"^{name} holds 3 non-finite values \(NaN or inf\) among {bad.size}\. In the frequency domain each one "
               r"would spread over .*algo='im2col', which keeps them local as PyTorch does")
    with pytest.raises(ValueError, match=message):
        _pass_call(pass_name, operands["input"], operands["weight"], operands["grad_output"], algo="fft")


def test_nan_only_in_the_input_no_output_reads_is_no_error(rng):
    """A stride can leave the last rows of the input unread: a NaN there reaches no output, with any algorithm."""
    x, w = rng.standard_normal((1, 2, 9, 8)), rng.standard_normal((3, 2, 2, 2))
    x[..., 8, :] = np.nan  # stride 2 with a 2-tap kernel reads rows 0..7
    expected = fftconv.conv2d(x, w, stride=2, algo="direct")
    assert np.isfinite(expected).all()
    assert_close(fftconv.conv2d(x, w, stride=2, algo="fft"), expected, 1e-12)


@pytest.mark.parametrize("memory", ["reuse", "recompute"])
def test_fft_layer_refuses_nan_in_forward_and_in_backward_and_keeps_its_state(memory, rng):
    layer = Conv2d(3, 4, 3, dtype=np.float64, rng=0, memory=memory, backend="numpy")
    x = rng.standard_normal((2, 3, 8, 8))
    bad = x.copy()
    bad[1, 2, 4, 4] = np.nan
    with pytest.raises(ValueError, match=r"input holds 1 non-finite value \(NaN or inf\)"):
        layer.forward(bad)
    y = layer.forward(x)
    grad_output = rng.standard_normal(y.shape)
    bad_grad = grad_output.copy()
    bad_grad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"grad_output holds 1 non-finite value"):
        layer.backward(bad_grad)
    twin = Conv2d(3, 4, 3, dtype=np.float64, rng=0, algo="direct")
    twin.forward(x)
    assert_close(layer.backward(grad_output), twin.backward(grad_output), 1e-12)  # the refused call kept the state
    assert_close(layer.grad_weight, twin.grad_weight, 1e-12)


# ---------------------------------------------------------------------- float32 near the top of its range
def _float32_problem(rng, magnitude: float, positive: bool = False):
    """float32 operands with the input (or the output gradient) of ``magnitude``; the float64 oracle's results."""
    x = rng.standard_normal((4, 4, 16, 16))
    x = np.abs(x) if positive else x
    w, gy = rng.standard_normal((4, 4, 3, 3)), rng.standard_normal((4, 4, 16, 16))
    return {"x": (x * magnitude).astype(np.float32), "w": w.astype(np.float32), "gy": gy.astype(np.float32),
            "big_gy": (gy * magnitude).astype(np.float32)}


OVERFLOW_PASSES = {
    "forward": lambda p, **k: fftconv.conv2d(p["x"], p["w"], padding=1, **k),
    "weight": lambda p, **k: fftconv.conv2d_weight(p["x"], p["w"].shape, p["gy"], padding=1, **k),
    "input": lambda p, **k: fftconv.conv2d_input(p["x"].shape, p["w"], p["big_gy"], padding=1, **k),
}


# the input gradient's spectra are both scaled: it stays exact up to results of 2.9e38 (output gradients of 1e37)
EXACT_CASES = [(p, m) for p in OVERFLOW_PASSES for m in (1e35, 1e36)] + [("input", 1e37)]


@pytest.mark.parametrize("positive", [False, True], ids=["signed", "positive"])
@pytest.mark.parametrize("pass_name, magnitude", EXACT_CASES, ids=[f"{p}-{m:g}" for p, m in EXACT_CASES])
def test_float32_data_near_the_top_of_the_range_is_exact_with_fft(pass_name, magnitude, positive, rng):
    """The spectra of 1e35 and 1e36 data are far from float32's 3.4e38, and so is the scaled inverse: the result is
    finite and as accurate as any float32 result (the oracle: the same pass in float64 with direct loops)."""
    problem = _float32_problem(rng, magnitude, positive)
    got = OVERFLOW_PASSES[pass_name](problem, algo="fft")
    expected = OVERFLOW_PASSES[pass_name]({k: v.astype(np.float64) for k, v in problem.items()}, algo="direct")
    assert np.isfinite(expected).all() and np.abs(expected).max() < 3e38
    # 18x18 FFT, sums of 36 (forward, input) or 1024 (weight) terms
    assert_close(got, expected, tolerance(np.float32, 18 * 18, 1024), f"{pass_name} at {magnitude:g}")


@pytest.mark.parametrize("pass_name", ["forward", "weight"])
def test_float32_overflow_in_the_frequency_domain_raises_naming_dtype_and_fix(pass_name, rng):
    """Positive data of 1e37: the transforms sum 256 such values (2.6e39), past float32's range. The forward result
    (2.0e38) still fits, and im2col computes it; the weight gradient's (1.2e39) does not, and im2col returns inf.
    fft never returns a silent inf: an OverflowError naming the dtype, the magnitude, float64 and im2col."""
    problem = _float32_problem(rng, 1e37, positive=True)
    with pytest.raises(OverflowError, match=r"overflowed float32.*3\.4e\+38.*float64.*algo='im2col'"):
        OVERFLOW_PASSES[pass_name](problem, algo="fft")


# ---------------------------------------------------------------------- NaN, inf and overflow with algo="auto"
AUTO_GEOMETRIES = {
    "plain": dict(),
    "strided-padded-dilated": dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "grouped-same": dict(padding="same", groups=3),
}


def _auto_picks(monkeypatch, algo: str) -> None:
    """Make ``algo="auto"`` pick ``algo`` for every pass."""
    from fftconv.choose import decide

    class Pick:
        pass

    pick = Pick()
    pick.algo, pick.options = algo, {}
    monkeypatch.setattr(decide, "choose", lambda *args, **kwargs: pick)


def _auto_pass(pass_name: str, operands: dict, hyper: dict, algo: str):
    x, w, gy = operands["input"], operands["weight"], operands["grad_output"]
    if pass_name == "forward":
        return fftconv.conv2d(x, w, **hyper, algo=algo)
    if pass_name == "input":
        return fftconv.conv2d_input(x.shape, w, gy, **hyper, algo=algo)
    return fftconv.conv2d_weight(x, w.shape, gy, **hyper, algo=algo)


def _auto_operands(rng, hyper: dict, bad: str | None, value=np.nan) -> dict:
    x, w = rng.standard_normal((2, 3, 10, 11)), rng.standard_normal((6, 3 // hyper.get("groups", 1), 3, 2))
    gy = rng.standard_normal(fftconv.conv2d(x, w, **hyper, algo="direct").shape)
    operands = {"input": x, "weight": w, "grad_output": gy}
    if bad is not None:
        operands[bad].flat[operands[bad].size // 3] = value
    return operands


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # im2col meeting NaN or inf
@pytest.mark.parametrize("pass_name, name", BAD_CASES, ids=[f"{p}-{n}" for p, n in BAD_CASES])
@pytest.mark.parametrize("geometry", AUTO_GEOMETRIES, ids=AUTO_GEOMETRIES.keys())
def test_auto_keeps_nan_where_the_spatial_algorithms_put_it_when_its_pick_is_fft(geometry, pass_name, name,
                                                                                  monkeypatch, rng):
    """auto picked fft; the NaN would spread, so the pass is computed with im2col: NaN exactly where the direct loops
    (an independent implementation) put it, and the finite values equal theirs."""
    hyper = AUTO_GEOMETRIES[geometry]
    operands = _auto_operands(rng, hyper, name)
    expected = _auto_pass(pass_name, operands, hyper, "direct")
    _auto_picks(monkeypatch, "fft")
    got = _auto_pass(pass_name, operands, hyper, "auto")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert 0 < np.isnan(expected).sum() < expected.size or name == "weight"
    finite = np.isfinite(expected)
    assert_close(got[finite], expected[finite], 1e-12)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # im2col meeting NaN or inf
@pytest.mark.parametrize("pass_name, name", BAD_CASES, ids=[f"{p}-{n}" for p, n in BAD_CASES])
def test_auto_with_nan_matches_torch_exactly_where_values_are_nan_or_inf(pass_name, name, monkeypatch, rng):
    torch = pytest.importorskip("torch")
    hyper = AUTO_GEOMETRIES["strided-padded-dilated"]
    operands = _auto_operands(rng, hyper, name, value=np.inf)
    _auto_picks(monkeypatch, "fft")
    got = _auto_pass(pass_name, operands, hyper, "auto")
    x, w, gy = (torch.tensor(operands[key]) for key in ("input", "weight", "grad_output"))
    expected = {"forward": lambda: torch.nn.functional.conv2d(x, w, **hyper),
                "input": lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, **hyper),
                "weight": lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, **hyper)}[pass_name]().numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # im2col meeting NaN or inf
def test_auto_checks_the_result_of_a_mixing_algorithm_that_does_not_check_itself(monkeypatch, rng):
    """A registered algorithm that spreads a NaN over its whole result (as a transform of a tile would) and raises
    nothing: auto sees the NaN and computes the pass with im2col."""
    from fftconv import algorithms

    class Spreading:
        name, options = "spreading", ()
        keeps_nonfinite_local = refuses_nonfinite = False  # what the registry's entries declare

        def forward(self, x, w, bias, g, backend=None, fft_size=None):
            y = algorithms.ALGORITHMS["im2col"].forward(x, w, bias, g, backend, fft_size)
            return y + np.sum(x) * 0  # a NaN anywhere in x reaches every output

    monkeypatch.setitem(algorithms.ALGORITHMS, "spreading", Spreading())
    _auto_picks(monkeypatch, "spreading")
    operands = _auto_operands(rng, {}, "input")
    got = fftconv.conv2d(operands["input"], operands["weight"], algo="auto")
    expected = fftconv.conv2d(operands["input"], operands["weight"], algo="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isfinite(got).sum() > 0


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # im2col meeting NaN or inf
def test_auto_computes_a_pass_that_overflows_float32_in_the_frequency_domain_with_im2col(monkeypatch, rng):
    problem = _float32_problem(rng, 1e37, positive=True)
    expected = OVERFLOW_PASSES["forward"](problem, algo="im2col")
    assert np.isfinite(expected).all()
    _auto_picks(monkeypatch, "fft")
    np.testing.assert_array_equal(OVERFLOW_PASSES["forward"](problem, algo="auto"), expected)


def test_auto_keeps_the_fft_result_when_the_operands_are_finite(monkeypatch, rng):
    operands = _auto_operands(rng, {}, None)
    explicit = fftconv.conv2d(operands["input"], operands["weight"], algo="fft")
    _auto_picks(monkeypatch, "fft")
    np.testing.assert_array_equal(fftconv.conv2d(operands["input"], operands["weight"], algo="auto"), explicit)


# ---------------------------------------------------------------------- one layer, two threads
@pytest.mark.parametrize("make", [lambda: Conv2d(2, 3, 3, dtype=np.float64, rng=0),
                                  lambda: Linear(4, 3, dtype=np.float64, rng=0)], ids=["conv2d", "linear"])
def test_a_layer_entered_by_a_second_thread_raises_naming_the_layer_and_the_fix(make, rng):
    """Thread A is stopped inside forward (in a subclass that calls the layer's own forward, which the guard lets
    the same thread re-enter); the main thread's forward and backward on the same layer are refused. Once A is done,
    the layer serves the main thread."""
    base = make()
    x = rng.standard_normal((2, 2, 6, 6) if isinstance(base, Conv2d) else (2, 4))
    entered, release = threading.Event(), threading.Event()

    class Slow(type(base)):
        def forward(self, x):
            entered.set()
            release.wait(30)
            return super().forward(x)

    layer = Slow.__new__(Slow)
    layer.__dict__.update(base.__dict__)
    worker = threading.Thread(target=layer.forward, args=(x,))
    worker.start()
    try:
        assert entered.wait(10)
        message = (rf"{re.escape(repr(layer))}\.(forward|backward)\(\) was called while another thread is inside this "
                   r"layer's forward or backward\. .*give each thread its own layer")
        with pytest.raises(RuntimeError, match=message):
            layer.forward(x)
        with pytest.raises(RuntimeError, match=message):
            layer.backward(np.ones((2, 3, 4, 4) if isinstance(base, Conv2d) else (2, 3)))
    finally:
        release.set()
        worker.join()
    y = layer.forward(x)  # the other thread is done: one thread at a time is fine, whichever it is
    assert y.shape[0] == 2 and layer.backward(np.ones_like(y)).shape == x.shape
