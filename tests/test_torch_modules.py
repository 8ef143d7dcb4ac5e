"""fftconv.torch's modules against torch.nn with the same weights, state dicts both ways, and convert()."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fftconv.torch")
nn = torch.nn

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

CONV_PAIRS = [(nn.Conv1d, ft.FFTConv1d), (nn.Conv2d, ft.FFTConv2d), (nn.Conv3d, ft.FFTConv3d)]
TRANSPOSED_PAIRS = [(nn.ConvTranspose1d, ft.FFTConvTranspose1d), (nn.ConvTranspose2d, ft.FFTConvTranspose2d),
                    (nn.ConvTranspose3d, ft.FFTConvTranspose3d)]
SIZES = {1: (11,), 2: (7, 6), 3: (5, 4, 4)}


def twins(torch_class, fft_class, *args, **kwargs):
    """A torch.nn layer and an fftconv layer built with the same arguments, the second holding the first's weights."""
    reference = torch_class(*args, dtype=torch.float64, **kwargs)
    ours = fft_class(*args, dtype=torch.float64, algo="fft", **kwargs)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def assert_same_step(reference, ours, x, **call):
    """Same output, input gradient and parameter gradients for one forward + backward."""
    outputs = []
    for layer in (reference, ours):
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        y = layer(xi, **call)
        y.backward(torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).cos())
        outputs.append([y, xi.grad, *(p.grad for p in layer.parameters())])
    for a, e in zip(*outputs):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10 * e.abs().max().item())


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pair", CONV_PAIRS, ids=lambda p: p[1].__name__ if isinstance(p, tuple) else None)
def test_conv_modules_match_torch_nn(pair, padding_mode):
    torch_class, fft_class = pair
    ndim = int(fft_class.__name__[-2])
    torch.manual_seed(ndim)
    for kwargs in (dict(stride=2, padding=1, dilation=1, groups=2, bias=True),
                   dict(padding="same", dilation=2, bias=False)):
        reference, ours = twins(torch_class, fft_class, 4, 6, 3, padding_mode=padding_mode, **kwargs)
        assert_same_step(reference, ours, torch.randn(2, 4, *SIZES[ndim], dtype=torch.float64))


@pytest.mark.parametrize("pair", TRANSPOSED_PAIRS, ids=lambda p: p[1].__name__ if isinstance(p, tuple) else None)
def test_transposed_modules_match_torch_nn(pair):
    torch_class, fft_class = pair
    ndim = int(fft_class.__name__[-2])
    torch.manual_seed(ndim)
    reference, ours = twins(torch_class, fft_class, 4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    x = torch.randn(2, 4, *SIZES[ndim], dtype=torch.float64)
    assert_same_step(reference, ours, x)
    # output_size picks the output padding, as in torch.nn
    size = [2 * n for n in SIZES[ndim]]
    reference, ours = twins(torch_class, fft_class, 4, 6, 3, stride=2, padding=1, dilation=1)
    assert_same_step(reference, ours, x, output_size=size)
    with pytest.raises(ValueError, match='Only "zeros" padding mode'):
        fft_class(4, 6, 3, padding_mode="reflect")


def test_float32_module_matches_torch_to_float32_accuracy():
    torch.manual_seed(0)
    reference, ours = nn.Conv2d(3, 8, 5, padding=2), ft.FFTConv2d(3, 8, 5, padding=2)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(4, 3, 16, 16)
    y, y_ref = ours(x), reference(x)
    assert y.dtype == torch.float32
    assert (y - y_ref).abs().max() <= 1e-5 * y_ref.abs().max()  # the project's float32 bound


def test_same_initialisation_parameters_and_keys_as_torch():
    for (torch_class, fft_class), arguments in zip(CONV_PAIRS + TRANSPOSED_PAIRS, [(3, 4, 3)] * 6):
        torch.manual_seed(7)
        reference = torch_class(*arguments, groups=1, bias=True)
        torch.manual_seed(7)
        ours = fft_class(*arguments, groups=1, bias=True, algo="im2col", memory="recompute")
        assert isinstance(ours, torch_class)
        assert list(ours.state_dict()) == list(reference.state_dict()) == ["weight", "bias"]
        for a, e in zip(ours.parameters(), reference.parameters()):
            assert torch.equal(a, e) and isinstance(a, nn.Parameter)


def test_state_dict_round_trip_both_ways():
    torch.manual_seed(1)
    theirs, ours = nn.Conv2d(3, 5, 3, bias=True), ft.FFTConv2d(3, 5, 3, bias=True)
    buffer = io.BytesIO()
    torch.save(theirs.state_dict(), buffer)
    buffer.seek(0)
    ours.load_state_dict(torch.load(buffer))
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    ours.weight.data.mul_(2)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    theirs.load_state_dict(torch.load(buffer))
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    buffer = io.BytesIO()  # the whole module pickles too
    torch.save(ours, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    assert type(again) is ft.FFTConv2d and again.algo == "auto" and torch.equal(again.weight, ours.weight)


def test_repr_options_device_and_dtype():
    layer = ft.FFTConv2d(3, 8, kernel_size=3, stride=2, device="cpu", dtype=torch.float64, algo="fft",
                         fft_size="pow2", memory="recompute")
    assert repr(layer) == ("FFTConv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), algo='fft', fft_size='pow2', "
                           "memory='recompute')")
    assert layer.weight.dtype == torch.float64 and layer.weight.device.type == "cpu"
    assert repr(ft.FFTConvTranspose1d(2, 2, 3)) == "FFTConvTranspose1d(2, 2, kernel_size=(3,), stride=(1,))"
    with pytest.raises(ValueError, match="FFTConv2d: algo='gemm' is unknown"):
        ft.FFTConv2d(3, 8, 3, algo="gemm")
    with pytest.raises(ValueError, match="FFTConv1d: memory='none' is unknown"):
        ft.FFTConv1d(3, 8, 3, memory="none")


# ---------------------------------------------------------------------------------------------------- convert
class Block(nn.Module):
    """A residual block with batch norm; a 1x1 convolution on the shortcut when the width changes."""

    def __init__(self, channels_in, channels_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = (nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(channels_out)) if stride != 1 or channels_in != channels_out
                         else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def residual_network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU(), Block(8, 8, 1),
                         Block(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).double()


def test_convert_trains_a_residual_network_like_the_original():
    model = residual_network()
    converted, report = ft.convert(model, algo="fft", min_kernel_size=3)
    assert report.replaced == ["0", "3.conv1", "3.conv2", "4.conv1", "4.conv2"]
    assert report.left_alone == {"4.shortcut.0": "kernel too small (1x1 < min_kernel_size=3)"}
    assert type(model[0]) is nn.Conv2d and type(converted[0]) is ft.FFTConv2d  # the original is untouched
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    losses = {}
    for name, network in (("torch", model), ("fftconv", converted)):
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
        losses[name] = []
        for _ in range(4):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(network(x), labels)
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    assert losses["fftconv"][-1] < losses["fftconv"][0]  # it learns
    torch.testing.assert_close(torch.tensor(losses["fftconv"]), torch.tensor(losses["torch"]), rtol=1e-10, atol=0)
    for a, e in zip(converted.parameters(), model.parameters()):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)
    model.eval(), converted.eval()
    torch.testing.assert_close(converted(x), model(x), rtol=1e-10, atol=1e-12)


def test_convert_inplace_keeps_parameters_hooks_and_training_mode():
    model = residual_network().eval()
    calls = []
    model[0].register_forward_hook(lambda module, args, output: calls.append(type(module).__name__))
    weight = model[0].weight
    converted, report = ft.convert(model, inplace=True, memory="recompute", where=lambda name, m: name != "3.conv2")
    assert converted is model and model[0].weight is weight
    assert not model[0].training and model[0].memory == "recompute" and model[0].algo == "auto"
    assert report.left_alone["3.conv2"] == "excluded by where"
    model(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    assert calls == ["FFTConv2d"]


def test_convert_reports_every_reason_to_leave_a_layer_alone():
    class OwnConv(nn.Conv2d):
        pass

    model = nn.Sequential(nn.Conv2d(2, 2, 3).half(), OwnConv(2, 2, 3), ft.FFTConv2d(2, 2, 3),
                          nn.LazyConv2d(2, 3), nn.ConvTranspose1d(2, 2, 4), nn.Conv2d(2, 2, 1))
    converted, report = ft.convert(model, min_kernel_size=2)
    assert report.replaced == ["4"] and type(converted[4]) is ft.FFTConvTranspose1d
    reasons = report.left_alone
    assert reasons["0"].startswith("unsupported dtype torch.float16")
    assert "OwnConv is a subclass of torch.nn.Conv2d" in reasons["1"]
    assert reasons["2"] == "already an fftconv.torch layer"
    assert reasons["3"].startswith("lazy module not initialised")
    assert reasons["5"].startswith("kernel too small")
    text = str(report)
    assert text.splitlines()[0].endswith("1 of 6 convolution layers replaced")
    assert "left alone: unsupported dtype" in text and "replaced" in text
    with pytest.raises(ValueError, match="convert: algo='fast' is unknown"):
        ft.convert(model, algo="fast")
    with pytest.raises(ValueError, match="min_kernel_size must be a positive int"):
        ft.convert(model, min_kernel_size=0)
