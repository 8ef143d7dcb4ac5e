"""fftconv operators release torch's OpenMP team before they run, so its spinning workers leave the cores to
fftconv's pool (see fftconv/torch/_threads.py)."""

from __future__ import annotations

import os
import time

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fftconv.torch")
from fftconv.torch import _threads  # noqa: E402


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def os_threads() -> int:
    """OS threads of this process (torch's OpenMP workers among them)."""
    return len(os.listdir("/proc/self/task"))


def test_release_lets_the_openmp_workers_exit(two_torch_threads):
    if not _threads._pause_functions():
        pytest.skip("no libgomp with omp_pause_resource_all in this process (torch not built with GNU OpenMP)")
    x = torch.randn(64, 64, 64)
    torch.relu(x)  # a parallel region: the team now has its worker
    with_team = os_threads()
    assert _threads.release_torch_threads() >= 1
    deadline = time.monotonic() + 5
    while os_threads() >= with_team and time.monotonic() < deadline:  # workers exit just after the release
        time.sleep(0.01)
    assert os_threads() < with_team
    torch.testing.assert_close(torch.relu(x), x.clamp(min=0))  # torch starts a new team and computes as before


def test_release_is_skipped_where_nothing_spins(two_torch_threads, monkeypatch):
    monkeypatch.setenv("FFTCONV_TORCH_RELEASE_OPENMP", "0")
    assert _threads.release_torch_threads() == 0
    monkeypatch.setenv("FFTCONV_TORCH_RELEASE_OPENMP", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert _threads.release_torch_threads() == 0
    monkeypatch.delenv("OMP_WAIT_POLICY")
    torch.set_num_threads(1)
    assert _threads.release_torch_threads() == 0
    monkeypatch.setenv("FFTCONV_TORCH_RELEASE_OPENMP", "sometimes")
    torch.set_num_threads(2)
    with pytest.raises(ValueError, match="FFTCONV_TORCH_RELEASE_OPENMP must be 0 or 1"):
        _threads.release_torch_threads()


def test_every_operator_call_releases_first(two_torch_threads, monkeypatch):
    calls = []
    monkeypatch.setattr("fftconv.torch._ops.release_torch_threads", lambda: calls.append(1) or 0)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    ft.conv2d(x, torch.randn(4, 3, 3, 3), algo="fft").sum().backward()
    assert len(calls) == 2  # the forward operator and the backward operator
