"""Where one FFT layer's training step spends its time, stage by stage (not part of ``make figures``).

``python -m experiments.stage_profile --k 7 --n 32 --f 96 --fp 256`` times ``fftconv.nn.Conv2d`` forward + backward
(transform reuse, default backend, float32) and the wall-clock time spent inside each stage, by wrapping the functions
the spectral passes call (:func:`experiments.harness.fftconv_api.step_stages`): the per-bin GEMMs, the forward FFTs,
the inverse FFTs with their crops (one fused stage), and the DFT-matrix kernel transforms. Each wrapped call runs its
own thread-pool work, so the stages add up to the step, and ``rest`` is what none of them covers (Python,
allocation). It runs in the calling process and only prints: for numbers comparable with the experiments, set
``FFTCONV_THREADS`` and glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` as the experiments' workers
do (docs/experiments.md, "How a time is measured").
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator


@contextmanager
def stage_timers(totals: dict[str, float]) -> Iterator[None]:
    """Wrap the stage functions so that each call adds its wall-clock seconds to ``totals[stage]``."""
    from .harness.fftconv_api import step_stages

    targets = step_stages()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]

    def timed(function, stage):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - start
        return wrapper

    for (owner, name, stage), (_, _, function) in zip(targets, saved):
        setattr(owner, name, timed(function, stage))
    try:
        yield
    finally:
        for owner, name, function in saved:
            if isinstance(owner, ModuleType):
                setattr(owner, name, function)
            else:
                delattr(owner, name)  # the instance attribute goes: the class's method shows again


def profile_step(k: int, n: int, f: int, fp: int, batch: int = 32, repeats: int = 10,
                 warmup: int = 3) -> tuple[float, dict[str, float]]:
    """Seconds per step and per stage (means over ``repeats`` steps after ``warmup``)."""
    import numpy as np

    from fftconv import nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, f, n, n), dtype=np.float32)
    gy = rng.standard_normal((batch, fp, n - k + 1, n - k + 1), dtype=np.float32)
    layer = nn.Conv2d(f, fp, k, bias=False, rng=0)
    for _ in range(warmup):
        layer.forward(x)
        layer.backward(gy)
    totals: dict[str, float] = {}
    with stage_timers(totals):
        start = time.perf_counter()
        for _ in range(repeats):
            layer.forward(x)
            layer.backward(gy)
        step = (time.perf_counter() - start) / repeats
    return step, {stage: seconds / repeats for stage, seconds in totals.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("k", 7), ("n", 32), ("f", 96), ("fp", 256), ("batch", 32), ("repeats", 10)):
        parser.add_argument(f"--{name}", type=int, default=default)
    options = parser.parse_args(argv)
    step, stages = profile_step(options.k, options.n, options.f, options.fp, options.batch, options.repeats)
    print(f"step (k, n, f, f') = ({options.k}, {options.n}, {options.f}, {options.fp}), batch {options.batch}: "
          f"{step * 1e3:.1f} ms")
    for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {stage:24s} {seconds * 1e3:8.1f} ms")
    print(f"  {'rest':24s} {(step - sum(stages.values())) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
