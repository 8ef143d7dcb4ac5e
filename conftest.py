"""Settings shared by the test suite and the doctests under fftconv/ (pytest loads this file for both)."""

import importlib.util
import os
import tempfile

import pytest

# algo="auto" calibrates an uncalibrated machine once, automatically: a few seconds of timing the suite must not
# spend at random points, and a calibration saved on this machine must not decide what the tests and doctests see.
# The suite starts from the built-in rates with an empty calibration folder; the tests of calibration turn it on and
# point it elsewhere for themselves.
os.environ["FFTCONV_CALIBRATE"] = "0"
os.environ["FFTCONV_CACHE"] = tempfile.mkdtemp(prefix="fftconv-test-cache-")

import fftconv  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session", autouse=True)
def quick_fftw_planning():
    """Plan pyFFTW transforms with FFTW_ESTIMATE during the tests.

    The default FFTW_MEASURE times candidate plans for every new transform shape (seconds each for 3-d shapes), and
    the suite builds hundreds of distinct shapes. ESTIMATE computes the same transform with a plan picked without
    timing; test_backends.py still builds FFTW_MEASURE plans explicitly and checks them against numpy.fft.
    """
    if "pyfftw" in fftconv.available_backends():
        fftconv.configure_pyfftw(threads=1, planner_effort="FFTW_ESTIMATE")
    yield


# fftconv.torch needs PyTorch (an optional extra): without it, its modules' doctests are not collected.
collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["fftconv/torch/*"]
