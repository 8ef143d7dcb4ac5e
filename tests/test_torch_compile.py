"""torch.compile (full graph: no graph break) and torch.export of models that use fftconv.torch's operators; and
torch staying optional."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fftconv.torch")
from fftconv.torch import _passes  # noqa: E402

nn = torch.nn
ROOT = Path(__file__).resolve().parents[1]
# torch's own compile stack (inductor, opcheck) still calls a deprecated torch.jit decorator: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


class Small(nn.Module):
    """Convolution, batch norm, ReLU and a transposed convolution: fftconv operators between torch ones."""

    def __init__(self, memory="reuse"):
        super().__init__()
        self.conv = ft.FFTConv2d(2, 4, 3, padding=1, algo="fft", memory=memory, dtype=torch.float64)
        self.norm = nn.BatchNorm2d(4, dtype=torch.float64)
        self.up = ft.FFTConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, algo="auto",
                                        dtype=torch.float64)

    def forward(self, x):
        return self.up(torch.relu(self.norm(self.conv(x))))


def step(model, x, parameters=None):
    """Output and the gradients of a loss with respect to the input and every parameter."""
    x = x.clone().requires_grad_()
    y = model(x)
    parameters = list(model.parameters()) if parameters is None else parameters
    grads = torch.autograd.grad(y.square().sum(), [x, *parameters])
    return [y.detach(), *grads]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("memory", ["reuse", "recompute"])
def test_compile_fullgraph_aot_eager_matches_eager(memory):
    torch.manual_seed(0)
    model = Small(memory)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    expected = step(model, x)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: a graph break is an error
    for _ in range(2):  # the second call runs the cached graph
        for a, e in zip(step(compiled, x), expected):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dynamic", [None, True], ids=["automatic-dynamic", "dynamic"])
def test_compile_with_changing_shapes(dynamic):
    """Shapes traced as symbols: the operator's fake rule specialises on them, so each shape gets its graph."""
    torch.manual_seed(2)
    model = Small()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=dynamic)
    for batch, size in ((2, 6), (3, 6), (3, 7)):
        x = torch.randn(batch, 2, size, size, dtype=torch.float64)
        for a, e in zip(step(compiled, x), step(model, x)):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_compiled_training_step_reuses_the_forward_spectra(monkeypatch):
    """The kept spectra are outputs of the forward operator, so the compiled backward reads them too."""
    roles: list[str] = []
    transform = _passes.transform
    monkeypatch.setattr(_passes, "transform", lambda spec, role, *a: roles.append(role) or transform(spec, role, *a))
    layer = ft.FFTConv2d(2, 3, 3, algo="fft", dtype=torch.float64)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    compiled(x)  # trace and compile first: fake tensors transform nothing, but start from a clean count
    roles.clear()
    compiled(x).sum().backward()
    assert sorted(roles) == ["grad_output", "input", "weight"]


def test_compile_with_inductor():
    """The default backend, on the smallest model that still makes it generate code around the operator."""
    torch.manual_seed(3)
    layer = ft.FFTConv2d(2, 3, 3, padding=1, algo="fft")
    x = torch.randn(1, 2, 5, 5)
    expected = step(lambda t: torch.relu(layer(t)), x, list(layer.parameters()))
    compiled = torch.compile(lambda t: torch.relu(layer(t)), fullgraph=True)
    try:
        actual = step(compiled, x, list(layer.parameters()))
    except Exception as error:  # noqa: BLE001 - decide below whether it is the toolchain or fftconv
        if type(error).__module__.startswith("torch._inductor") or "CppCompileError" in repr(error) \
                or "InvalidCxxCompiler" in repr(error):
            pytest.skip(f"inductor cannot build C++ kernels on this machine: {type(error).__name__}")
        raise
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


def test_export_records_the_fftconv_operators():
    torch.manual_seed(1)
    model = Small().eval()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    program = torch.export.export(model, (x,))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count("fftconv.conv_pass.default") == 2
    torch.testing.assert_close(program.module()(x), model(x), rtol=1e-12, atol=1e-12)
    other = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(program.module()(other), model(other), rtol=1e-12, atol=1e-12)


def test_operator_schemas_and_fake_rules_pass_torch_checks():
    """torch.library.opcheck: schema, fake rule (shapes of the result and of the kept spectra), autograd."""
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for algo in ("fft", "im2col"):
        config = ([2, 3, 6, 6], [4, 3, 3, 3], [1, 1], [1, 1], "", [1, 1], 1, algo, None, None, None)
        for keep in ([True, True], [False, False]):
            torch.library.opcheck(torch.ops.fftconv.conv_pass, (x, w, b, "forward", *config, keep))
        gy = torch.randn(2, 4, 6, 6, dtype=torch.float64)
        torch.library.opcheck(torch.ops.fftconv.conv_pass_backward,
                              (gy, x.detach(), w.detach(), None, None, "forward", *config, [True, True]),
                              test_utils=("test_schema", "test_faketensor"))


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_fftconv_does_not_import_torch():
    done = run_python("import sys, fftconv, fftconv.nn; print('torch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_torch_the_error_says_how_to_install_it():
    done = run_python("import sys; sys.modules['torch'] = None\nimport fftconv\ntry:\n    import fftconv.torch\n"
                      "except ImportError as error:\n    print(error)\n")
    assert done.returncode == 0, done.stderr
    assert 'pip install "fftconv[torch]"' in done.stdout
