"""Check a layer's ``backward`` against central finite differences (the oracle the tests use for every layer).

For a layer ``y = F(x; params)`` and a fixed output gradient ``gy``, the scalar ``L = <F(x), gy>`` has gradients
``dL/dx = backward(gy)`` and ``dL/dparam = grad_param``. Central differences ``(L(t + eps) - L(t - eps)) / (2 eps)``
approximate them with error ``O(eps^2 |F'''|)`` plus rounding ``O(ulp(L) / eps)``; for the (bi)linear layers the
first term vanishes, so in float64 with ``eps = 1e-6`` the agreement is about ``1e-9`` relative.
"""

from __future__ import annotations

import numpy as np

from .module import Module


def _probe(module: Module, x: np.ndarray, grad_output: np.ndarray) -> float:
    return float(np.vdot(module.forward(x), grad_output))


def _central_differences(module: Module, x: np.ndarray, grad_output: np.ndarray, target: np.ndarray,
                         eps: float) -> np.ndarray:
    """``dL/dtarget`` by perturbing each entry of ``target`` (``x`` or a parameter) in place, then restoring it."""
    numeric = np.zeros(target.shape, dtype=np.float64)
    flat = target.reshape(-1)  # a view: target is contiguous
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = _probe(module, x, grad_output)
        flat[i] = original - eps
        minus = _probe(module, x, grad_output)
        flat[i] = original
        numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return numeric


def finite_difference_gradients(module: Module, x: np.ndarray, grad_output: np.ndarray,
                                eps: float = 1e-6) -> tuple[np.ndarray, list[np.ndarray]]:
    """Numerical ``(dL/dx, [dL/dparam, ...])`` for ``L = <module.forward(x), grad_output>``.

    The module runs in evaluation mode meanwhile (nothing is saved) and is put back in training mode after.
    ``x`` and the parameters must be C-contiguous float64 arrays; they are perturbed in place and restored.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Linear
    >>> layer = Linear(3, 2, dtype=np.float64, rng=0)
    >>> x, gy = np.ones((1, 3)), np.array([[1.0, -1.0]])
    >>> numeric_x, (numeric_w, numeric_b) = finite_difference_gradients(layer, x, gy)
    >>> bool(np.allclose(numeric_x, gy @ layer.weight)), bool(np.allclose(numeric_b, gy[0]))
    (True, True)
    """
    for name, array in [("x", x), *((f"parameter {i}", p) for i, (p, _) in enumerate(module.parameters()))]:
        if array.dtype != np.float64 or not array.flags.c_contiguous:
            raise ValueError(f"finite differences need C-contiguous float64 arrays; {name} is {array.dtype}, "
                             f"contiguous={array.flags.c_contiguous}")
    module.eval()
    try:
        numeric_x = _central_differences(module, x, grad_output, x, eps)
        numeric_params = [_central_differences(module, x, grad_output, p, eps) for p, _ in module.parameters()]
    finally:
        module.train()
    return numeric_x, numeric_params


def analytic_gradients(module: Module, x: np.ndarray, grad_output: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(backward(grad_output), [grad_param, ...])`` after zeroing the gradients and one forward."""
    module.train()
    module.zero_grad()
    module.forward(x)
    grad_input = module.backward(grad_output)
    return grad_input, [grad.copy() for _, grad in module.parameters()]


def check_gradients(module: Module, x: np.ndarray, grad_output: np.ndarray | None = None, *, eps: float = 1e-6,
                    rtol: float = 1e-6, seed: int = 0) -> None:
    """Raise ``AssertionError`` if ``backward`` disagrees with central differences.

    The absolute tolerance scales with the gradient's size: ``rtol * max(1, max|numeric|)``, so entries that are
    zero in exact arithmetic (an unused input, a pooled-away position) do not make the test meaningless.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Conv1d
    >>> check_gradients(Conv1d(2, 3, 3, padding=1, dtype=np.float64, rng=0), np.ones((2, 2, 5)))
    """
    if grad_output is None:
        module.eval()
        shape = module.forward(x).shape
        module.train()
        grad_output = np.random.default_rng(seed).standard_normal(shape)
    analytic_x, analytic_params = analytic_gradients(module, x, grad_output)
    numeric_x, numeric_params = finite_difference_gradients(module, x, grad_output, eps)
    for name, analytic, numeric in [("input", analytic_x, numeric_x),
                                    *((f"parameter {i}", a, n) for i, (a, n) in
                                      enumerate(zip(analytic_params, numeric_params)))]:
        scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{module!r}: gradient of the {name} disagrees with finite differences")
