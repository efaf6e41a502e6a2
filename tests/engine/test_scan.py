"""The modern cells' two forms (workbench.engine.scan): the parallel scan used in
training equals the sequential step used in generation, in float32 over long
sequences, and the probe's zero input gives the total dL/dh_t of the stepped form."""
from __future__ import annotations

import math

import pytest
import torch

from workbench import cells
from workbench.engine import scan

CELLS = ("mingru", "minlstm", "lru")


def params(cell: str, n_in: int, H: int, dtype=torch.float32, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    p = {name: (torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(shape[-1])).to(dtype)
         for name, shape in cells.get(cell).param_shapes(n_in, H).items()}
    if cell == "lru":
        scan.lru_init(p, r_min=0.4, r_max=0.999, generator=gen)
    return p


def initial(cell: str, B: int, H: int, dtype, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    # a tanh bridge's state: either sign (the log-space scan must not take its log)
    s = torch.tanh(torch.randn(B, H, generator=gen, dtype=torch.float64)).to(dtype)
    return (s, -0.5 * s) if cell == "lru" else (s,)


FORMS = [("mingru", "log"), ("mingru", "linear"), ("minlstm", "log"), ("minlstm", "linear"), ("lru", "")]


def sequence(cell: str, form: str):
    """The cell's parallel form, the gated cells' in the form asked for (both are used:
    scan.FORM picks one per device)."""
    return (lambda *a, **k: scan.SEQUENCE[cell](*a, form=form, **k)) if form else scan.SEQUENCE[cell]


@pytest.mark.parametrize("cell,form", FORMS)
@pytest.mark.parametrize("with_state", [False, True])
def test_parallel_equals_sequential_float32_long(cell, form, with_state):
    B, T, n_in, H = 3, 1200, 5, 8
    p = params(cell, n_in, H)
    x = torch.randn(B, T, n_in, generator=torch.Generator().manual_seed(2))
    state = initial(cell, B, H, torch.float32) if with_state else None
    out, final, _ = sequence(cell, form)(p, x, state)
    ref, ref_final, _ = scan.stepped(cell, p, x, state)
    assert out.shape == (B, T, H)
    assert float(ref.abs().amax(dim=(0, 2))[-100:].min()) > 1e-2  # the late steps still carry signal
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell,form", FORMS[:4])
def test_gated_scans_precise_at_4096_against_float64(cell, form):
    """Chunked, neither form's float32 error grows with T."""
    B, T, n_in, H = 2, 4096, 3, 4
    p64 = params(cell, n_in, H, torch.float64)
    p32 = {k: v.float() for k, v in p64.items()}
    x = torch.randn(B, T, n_in, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out32, _, _ = sequence(cell, form)(p32, x.float())
    out64, _, _ = scan.SEQUENCE[cell](p64, x, form="log")
    torch.testing.assert_close(out32.double(), out64, rtol=2e-5, atol=1e-6)


def test_lru_linear_scan_stable_at_4096():
    B, T, n_in, H = 2, 4096, 3, 4
    p = params("lru", n_in, H, torch.float64)
    x = torch.randn(B, T, n_in, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out, _, _ = scan.lru_sequence(p, x)
    ref, _, _ = scan.stepped("lru", p, x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_probe_input_gives_total_dl_dh(cell):
    """dL/dz_t of the probe forward = autograd's dL/dh_t through the stepped form (float64)."""
    B, T, n_in, H = 2, 37, 3, 5
    p = params(cell, n_in, H, torch.float64)
    x = torch.randn(B, T, n_in, generator=torch.Generator().manual_seed(5), dtype=torch.float64).requires_grad_()
    w = torch.randn(B, T, H, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    state = initial(cell, B, H, torch.float64)

    def loss(out, final):  # reads every output and the final state
        return (out * w).sum() + sum(f.pow(2).sum() for f in final)

    out, final, z = scan.SEQUENCE[cell](p, x, state, probe=True)
    (dz,) = torch.autograd.grad(loss(out, final), [z])
    ref_out, ref_final, states = scan.stepped(cell, p, x, state)
    torch.testing.assert_close(out, ref_out)
    carried = [t for s in states for t in s]  # per t: the state tensors (h,) or (re, im)
    grads = torch.autograd.grad(loss(ref_out, ref_final), carried)
    k = len(states[0])
    if cell == "lru":  # the complex state's gradient: dL/dRe + i dL/dIm
        expected = torch.stack([torch.complex(grads[k * t], grads[k * t + 1]) for t in range(T)], dim=1)
    else:
        expected = torch.stack(grads, dim=1)
    assert float(expected[:, 0].abs().max()) > 1e-6  # the first step's gradient is not trivially zero
    torch.testing.assert_close(dz, expected, rtol=1e-9, atol=1e-12)


def test_lru_ring_initialisation():
    H = 4000
    p = {name: torch.empty(shape) for name, shape in cells.get("lru").param_shapes(2, H).items()}
    scan.lru_init(p, r_min=0.9, r_max=0.99, generator=torch.Generator().manual_seed(0))
    re, im = scan.lru_eigenvalues(p)
    r = torch.sqrt(re ** 2 + im ** 2)
    assert float(r.min()) >= 0.9 - 1e-6 and float(r.max()) <= 0.99 + 1e-6
    # uniform in area on the ring: the median |lambda|^2 is the mean of the squared radii
    assert abs(float((r ** 2).median()) - (0.9 ** 2 + 0.99 ** 2) / 2) < 0.01
    torch.testing.assert_close(torch.exp(p["gamma_log"]) ** 2, 1 - r ** 2, rtol=1e-4, atol=1e-6)
    phase = torch.atan2(im, re) % (2 * math.pi)
    assert float(phase.std()) > 1.5  # spread over the circle, not bunched at 0


def test_g_and_log_g():
    x = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    assert bool((scan.g(x) > 0).all())
    torch.testing.assert_close(scan.log_g(x), torch.log(scan.g(x)))
    assert float(scan.g(torch.zeros(1))) == 0.5
