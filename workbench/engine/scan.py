"""The recurrences of today: minGRU, minLSTM (Feng et al. 2024, "Were RNNs All We
Needed?") and the Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent
Neural Networks for Long Sequences"), each in two forms that compute the same numbers:

- the parallel form (``*_sequence``): the whole sequence at once, for training and
  evaluation. All three are diagonal linear recurrences h_t = a_t * h_{t-1} + b_t whose
  a_t, b_t depend on the input only, so the T steps need no loop over t:
    minGRU/minLSTM: the paper's scan in log space (``log_scan``: a cumulative sum of
      log a_t and a log-cumsum-exp of log b_t), run within chunks of CHUNK steps; on
      the CPU, where it measured 2-3x faster, ``linear_scan`` (FORM);
    LRU: a complex a_t = lambda (constant), ``linear_scan`` (chunked, see there).
- the sequential form (``*_step``): one step from the carried state, for generation,
  streaming try-out, the standalone script and the ONNX loop; written in real arithmetic
  only (the LRU's complex state as its real and imaginary parts) so that every exporter
  can take it.

The exact dL/dh_t probe (``probe=True``): b_t enters h_t additively, and h_t enters
every later step only through h_t itself, so the total dL/dh_t (recurrent path
included) is dL/db_t. The probe forward adds a zero tensor to b_t inside a linear-space
scan (``linear_scan``): its gradient after one backward is dL/dh_t for every t, at the
price of one more scan, no loop over t in Python.

Parameters come as a dict of one direction's tensors (names below); states as a tuple of
[B, H] tensors (None: zeros). Shapes: B batch, T time, In input width, H hidden width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- helpers

# log_scan's chunk: the cumulative log-decay inside a chunk stays bounded by CHUNK *
# max|log a_t|, so float32 keeps ~1e-6 relative precision however long the sequence is
# (one unchunked cumulative sum over T = 4096 steps of a_t ~ 0.5 reaches -2800, where a
# float32's spacing is 2.4e-4). The chunks' entering states follow one another in a
# loop of T / CHUNK steps.
CHUNK = 64

# Which parallel form minGRU/minLSTM train with, by device type: "log" (the paper's
# log-space scan: a cumulative sum and a log-cumsum-exp, a few wide kernels, what a GPU
# wants) or "linear" (``linear_scan``: 2*sqrt(T) narrow steps of plain multiply-adds).
# Both are stable and agree to float32 rounding (tests/engine/test_scan.py). On the CPU
# the linear form is 2-3x faster: PyTorch's CPU logcumsumexp costs ~35 ns an element,
# forward and backward (bench/modern_cells.py scan: 2.9x, 3.2x, 2.1x at T = 256, 1024,
# 4096; B=16, H=128).
FORM = {"cpu": "linear"}


def g(x: torch.Tensor) -> torch.Tensor:
    """The paper's positive activation for the candidate state: x + 0.5 for x >= 0,
    sigmoid(x) below (continuous at 0, always > 0, so its log exists)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed without forming g (stable for very negative x)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def _chunks(t: torch.Tensor, C: int, fill: float) -> torch.Tensor:
    """[B, T, H] -> [B, n, C, H], padded at the end with ``fill`` to n*C steps."""
    B, T, H = t.shape
    n = -(-T // C)
    if n * C != T:
        t = torch.cat([t, t.new_full((B, n * C - T, H), fill)], dim=1)
    return t.reshape(B, n, C, H)


def _carry(decay: torch.Tensor, local_end: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """The state entering each chunk: decay [B, n, H] (the product of a over the chunk),
    local_end [B, n, H] (the chunk's last state from a zero start) -> [B, n, H]."""
    B, n, H = decay.shape
    carry = h0 if h0 is not None else decay.new_zeros(B, H)
    entering = []
    # unbind, not [:, k]: the backward of n selects would build n zero tensors of the
    # whole input's size (quadratic in T); unbind's stacks the n gradients once
    for d_k, end_k in zip(decay.unbind(1), local_end.unbind(1)):  # n = T / chunk steps
        entering.append(carry)
        carry = d_k * carry + end_k
    return torch.stack(entering, dim=1)


def log_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None,
             chunk: int = CHUNK) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t over t, for a_t, b_t > 0 given by their logs [B, T, H];
    h0 [B, H] of any sign (None: zeros). Returns h [B, T, H].

    Inside a chunk from a zero state: log h_t = A_t + logcumsumexp_s<=t(log b_s - A_s),
    A_t = sum_{s<=t} log a_s (the paper's form, no division, no underflow: every term is
    a log). The state entering the chunk adds exp(A_t) * h_in (any sign: it never goes
    through a log, so a tanh bridge's negative initial state is fine)."""
    B, T, H = log_b.shape
    C = max(1, min(chunk, T))
    la = _chunks(log_a, C, 0.0)  # [B, n, C, H]: padding steps have a = 1, b = 0
    lb = _chunks(log_b, C, float("-inf"))
    A = la.cumsum(dim=2)  # [B, n, C, H]
    local = torch.exp(A + torch.logcumsumexp(lb - A, dim=2))  # from a zero state
    decay = torch.exp(A)
    entering = _carry(decay[:, :, -1], local[:, :, -1], h0)  # [B, n, H]
    h = local + decay * entering.unsqueeze(2)
    return h.reshape(B, -1, H)[:, :T]


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                chunk: int | None = None) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t over t in linear space: b [B, T, H] of any sign, real or
    complex; a [B, T, H] or [H] (constant), |a| <= 1; h0 [B, H] or None. Returns h.

    Chunks of C ~ sqrt(T) steps: all chunks step side by side from a zero state (C
    steps), then the states entering the chunks follow one another (T/C steps), then
    h = local + (product of a so far in the chunk) * entering. Only products of |a| <= 1
    appear (no division by a cumulative product, which underflows), so it is stable at
    any T; 2*sqrt(T) vector steps instead of T."""
    B, T, H = b.shape
    C = max(1, chunk or int(math.ceil(math.sqrt(T))))
    a = a.expand(B, T, H) if a.dim() == 1 else a
    bb = _chunks(b, C, 0.0)  # [B, n, C, H]
    aa = _chunks(a, C, 1.0)
    n = bb.shape[1]
    h = bb.new_zeros(B, n, H)
    prod = torch.ones_like(h)
    local, decay = [], []
    for a_c, b_c in zip(aa.unbind(2), bb.unbind(2)):  # C steps (unbind: see _carry)
        h = a_c * h + b_c
        prod = prod * a_c
        local.append(h)
        decay.append(prod)
    local_t = torch.stack(local, dim=2)  # [B, n, C, H]
    decay_t = torch.stack(decay, dim=2)
    entering = _carry(decay_t[:, :, -1], local_t[:, :, -1], h0)
    out = local_t + decay_t * entering.unsqueeze(2)
    return out.reshape(B, -1, H)[:, :T]


def _work(t: torch.Tensor) -> torch.Tensor:
    """At least float32: the scans' logs, exps and long sums lose too much in bf16/fp16
    (an autocast pass's projections), and there is no complex bf16 for the LRU."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _state(state, i: int = 0, like: torch.Tensor | None = None) -> torch.Tensor | None:
    if state is None:
        return None
    return state[i] if like is None else state[i].to(like.dtype)


# ----------------------------------------------------------------------------- the loop form
# What torch.onnx traces (torch.jit.is_tracing()): the same recurrence as a TorchScript
# loop over the input's own length, which the exporter turns into an ONNX Loop with a
# dynamic trip count (a traced Python loop, or the chunked scans, would fix T to the
# example's). a_t, b_t are computed for all t at once before the loop, as in training.


def _loop(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t: a, b [B, T, H], h [B, H] -> (h [B, T, H], h_T)."""
    outs: list[torch.Tensor] = []
    for t in range(b.size(1)):
        h = a[:, t] * h + b[:, t]
        outs.append(h)
    return torch.stack(outs, 1), h


def _complex_loop(l_re: torch.Tensor, l_im: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor,
                  r: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """s_t = lambda * s_{t-1} + b_t in real arithmetic (ONNX has no complex type):
    lambda [H], b [B, T, H], s_0 [B, H] as (re, im) -> (re [B, T, H], im [B, T, H], re_T, im_T)."""
    res: list[torch.Tensor] = []
    ims: list[torch.Tensor] = []
    for t in range(b_re.size(1)):
        r, i = l_re * r - l_im * i + b_re[:, t], l_re * i + l_im * r + b_im[:, t]
        res.append(r)
        ims.append(i)
    return torch.stack(res, 1), torch.stack(ims, 1), r, i


_SCRIPTED: dict = {}


def _scripted(fn):
    """fn compiled by TorchScript, once (on first export, not at import)."""
    if fn.__name__ not in _SCRIPTED:
        _SCRIPTED[fn.__name__] = torch.jit.script(fn)
    return _SCRIPTED[fn.__name__]


def _traced_linear(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None):
    h0 = h0 if h0 is not None else log_b.new_zeros(log_b.shape[0], log_b.shape[2])
    return _scripted(_loop)(torch.exp(log_a), torch.exp(log_b), h0)


# ----------------------------------------------------------------------------- minGRU
#   z_t = sigmoid(W_z x_t + b_z),  h~_t = g(W_h x_t + b_h)
#   h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
# Parameters (workbench/cells/mingru.py): weight_ih [2H, In] (rows: z, h~), bias_ih [2H].


def mingru_sequence(p: dict, x: torch.Tensor, state=None, probe: bool = False, form: str = ""):
    """x [B, T, In] -> (h [B, T, H], (h_T,), probe z [B, T, H] or None: dL/dz_t = dL/dh_t)."""
    k, pre_h = _work(F.linear(x, p["weight_ih"], p["bias_ih"])).chunk(2, dim=-1)  # [B, T, H] each
    log_a = -F.softplus(k)  # log(1 - z)
    log_b = -F.softplus(-k) + log_g(pre_h)  # log(z * h~)
    return _gated_scan(log_a, log_b, _state(state, like=log_b), probe, form)


def _gated_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None, probe: bool, form: str = ""):
    """minGRU/minLSTM's recurrence from its logs: -> (h [B, T, H], (h_T,), probe z or None).
    ``form``: "log" or "linear" (default: FORM by device); the probe always takes the
    linear form, where its zero input enters b_t additively."""
    if torch.jit.is_tracing():
        h, last = _traced_linear(log_a, log_b, h0)
        return h, (last,), None
    form = form or FORM.get(log_b.device.type, "log")
    if probe or form == "linear":
        z = torch.zeros_like(log_b, requires_grad=True) if probe else None
        h = linear_scan(torch.exp(log_a), torch.exp(log_b) + z if probe else torch.exp(log_b), h0)
        return h, (h[:, -1],), z
    h = log_scan(log_a, log_b, h0)
    return h, (h[:, -1],), None


def mingru_step(p: dict, x_t: torch.Tensor, state=None):
    """x_t [B, In] -> (h_t [B, H], (h_t,), gates {"update", "candidate"} [B, H])."""
    k, pre_h = F.linear(x_t, p["weight_ih"], p["bias_ih"]).chunk(2, dim=-1)
    z = torch.sigmoid(k)
    cand = g(pre_h)
    h = _state(state)
    h = z * cand if h is None else torch.lerp(h, cand, z)  # (1 - z) h + z h~
    return h, (h,), {"update": z, "candidate": cand}


# ----------------------------------------------------------------------------- minLSTM
#   f_t = sigmoid(W_f x_t + b_f), i_t = sigmoid(W_i x_t + b_i), h~_t = g(W_h x_t + b_h)
#   f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t)   (time-independent scale)
#   h_t = f'_t * h_{t-1} + i'_t * h~_t
# Parameters (workbench/cells/minlstm.py): weight_ih [3H, In] (rows: f, i, h~), bias_ih [3H].


def _minlstm_logs(kf: torch.Tensor, ki: torch.Tensor):
    """log f', log i' from the gate pre-activations: with d = softplus(-kf) - softplus(-ki)
    = log i - log f, log f' = -softplus(d) and log i' = -softplus(-d) (the paper's form)."""
    d = F.softplus(-kf) - F.softplus(-ki)
    return -F.softplus(d), -F.softplus(-d)


def minlstm_sequence(p: dict, x: torch.Tensor, state=None, probe: bool = False, form: str = ""):
    kf, ki, pre_h = _work(F.linear(x, p["weight_ih"], p["bias_ih"])).chunk(3, dim=-1)  # [B, T, H] each
    log_f, log_i = _minlstm_logs(kf, ki)
    log_b = log_i + log_g(pre_h)
    return _gated_scan(log_f, log_b, _state(state, like=log_b), probe, form)


def minlstm_step(p: dict, x_t: torch.Tensor, state=None):
    """x_t [B, In] -> (h_t, (h_t,), gates {"forget", "input", "candidate"}: f', i', h~)."""
    kf, ki, pre_h = F.linear(x_t, p["weight_ih"], p["bias_ih"]).chunk(3, dim=-1)
    log_f, log_i = _minlstm_logs(kf, ki)
    f, i = torch.exp(log_f), torch.exp(log_i)
    cand = g(pre_h)
    h = _state(state)
    h = i * cand if h is None else f * h + i * cand
    return h, (h,), {"forget": f, "input": i, "candidate": cand}


# ----------------------------------------------------------------------------- LRU
#   lambda = exp(-exp(nu) + i exp(theta))           (|lambda| < 1 for every nu)
#   s_t = lambda * s_{t-1} + gamma * (B x_t)          s complex [H], B complex [H, In]
#   y_t = GELU(Re(C s_t) + D x_t)                     C complex [H, H], D real [H, In]
#   gamma = exp(gamma_log), initialised to sqrt(1 - |lambda|^2) (the normalisation)
# The carried state is s_t as two real tensors (re, im); the layer's output is y_t.
# D is a full [H, In] map where the paper's is diagonal (its In = H always). The GELU is
# the position-wise nonlinearity of the paper's block (LRU -> GELU -> GLU/MLP): without
# one a stack of LRUs is linear in its input and cannot, say, pick the marked numbers
# of the adding problem (a product of two inputs). The block's GLU/MLP, normalisation
# and residual are not part of the layer.
# Parameters (workbench/cells/lru.py): weight_ih_re, weight_ih_im [H, In] (B); out_re,
# out_im [H, H] (C); skip [H, In] (D); weight_hh_nu, weight_hh_theta (log nu, log theta),
# gamma_log [H].

LRU_R_MIN, LRU_R_MAX, LRU_MAX_PHASE = 0.0, 1.0, 2 * math.pi  # the paper's defaults


@torch.no_grad()
def lru_init(p: dict, r_min: float = LRU_R_MIN, r_max: float = LRU_R_MAX, max_phase: float = LRU_MAX_PHASE,
             generator: torch.Generator | None = None) -> None:
    """The paper's initialisation, in place: eigenvalues uniform on the ring r_min <= |lambda|
    <= r_max (uniform in area, not in radius) with phases in [0, max_phase]; B, C Glorot-like
    complex normals; gamma = sqrt(1 - |lambda|^2)."""
    H, n_in = p["weight_ih_re"].shape
    dev, dt = p["weight_hh_nu"].device, p["weight_hh_nu"].dtype
    u1 = torch.rand(H, generator=generator, dtype=torch.float64).to(dev)
    u2 = torch.rand(H, generator=generator, dtype=torch.float64).to(dev)
    nu_log = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
    theta_log = torch.log(max_phase * u2.clamp_min(1e-12))
    modulus = torch.exp(-torch.exp(nu_log))
    p["weight_hh_nu"].copy_(nu_log.to(dt))
    p["weight_hh_theta"].copy_(theta_log.to(dt))
    p["gamma_log"].copy_(torch.log(torch.sqrt(1 - modulus ** 2).clamp_min(1e-12)).to(dt))

    def normal(shape, std):
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * std).to(device=dev, dtype=dt)
    p["weight_ih_re"].copy_(normal((H, n_in), 1 / math.sqrt(2 * n_in)))
    p["weight_ih_im"].copy_(normal((H, n_in), 1 / math.sqrt(2 * n_in)))
    p["out_re"].copy_(normal((H, H), 1 / math.sqrt(H)))
    p["out_im"].copy_(normal((H, H), 1 / math.sqrt(H)))
    p["skip"].copy_(normal((H, n_in), 1 / math.sqrt(n_in)))


def lru_eigenvalues(p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(Re lambda, Im lambda) [H]."""
    modulus = torch.exp(-torch.exp(p["weight_hh_nu"]))
    phase = torch.exp(p["weight_hh_theta"])
    return modulus * torch.cos(phase), modulus * torch.sin(phase)


def _lru_inputs(p: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gamma * (B x): (re, im), each [..., H]."""
    gamma = torch.exp(p["gamma_log"])
    return gamma * F.linear(x, p["weight_ih_re"]), gamma * F.linear(x, p["weight_ih_im"])


def _lru_out(p: dict, s_re: torch.Tensor, s_im: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = GELU(Re(C s) + D x), Re(C s) = C_re s_re - C_im s_im."""
    return F.gelu(F.linear(s_re, p["out_re"]) - F.linear(s_im, p["out_im"]) + F.linear(x, p["skip"]))


def lru_sequence(p: dict, x: torch.Tensor, state=None, probe: bool = False):
    """x [B, T, In] -> (y [B, T, H], (s_re_T, s_im_T), probe z [B, T, H] complex or None:
    dL/dz_t = dL/dRe s_t + i dL/dIm s_t, whose modulus per unit is the probe's dL/ds_t)."""
    b_re, b_im = (_work(b) for b in _lru_inputs(p, x))  # [B, T, H]
    l_re, l_im = (_work(v) for v in lru_eigenvalues(p))
    state = None if state is None else tuple(s.to(b_re.dtype) for s in state)
    if torch.jit.is_tracing():
        zero = b_re.new_zeros(b_re.shape[0], b_re.shape[2])
        r0, i0 = (zero, zero) if state is None else state
        s_re, s_im, r, i = _scripted(_complex_loop)(l_re, l_im, b_re, b_im, r0, i0)
        return _lru_out(p, s_re, s_im, x), (r, i), None
    b = torch.complex(b_re, b_im)
    z = None
    if probe:
        z = torch.zeros_like(b, requires_grad=True)
        b = b + z
    s0 = None if state is None else torch.complex(state[0], state[1])
    s = linear_scan(torch.complex(l_re, l_im), b, s0)  # [B, T, H] complex
    s_re, s_im = s.real, s.imag
    return _lru_out(p, s_re, s_im, x), (s_re[:, -1], s_im[:, -1]), z


def lru_state_step(p: dict, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
    """s_t = lambda * s_{t-1} + gamma * (B x_t) in real arithmetic: x_t [B, In] -> (re, im) [B, H]."""
    b_re, b_im = _lru_inputs(p, x_t)
    if state is None:
        return b_re, b_im
    l_re, l_im = lru_eigenvalues(p)
    r, i = state
    return l_re * r - l_im * i + b_re, l_re * i + l_im * r + b_im


def lru_output(p: dict, s_re: torch.Tensor, s_im: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = GELU(Re(C s) + D x): s [..., H] (re, im), x [..., In] -> [..., H]."""
    return _lru_out(p, s_re, s_im, x)


def lru_step(p: dict, x_t: torch.Tensor, state=None):
    """x_t [B, In] -> (y_t [B, H], (s_re, s_im), gates {"modulus": |s_t|}), real arithmetic."""
    s_re, s_im = lru_state_step(p, x_t, state)
    y = _lru_out(p, s_re, s_im, x_t)
    return y, (s_re, s_im), {"modulus": torch.sqrt(s_re ** 2 + s_im ** 2)}


SEQUENCE = {"mingru": mingru_sequence, "minlstm": minlstm_sequence, "lru": lru_sequence}
STEP = {"mingru": mingru_step, "minlstm": minlstm_step, "lru": lru_step}


def stepped(cell: str, p: dict, x: torch.Tensor, state=None):
    """The sequential form over a whole sequence: x [B, T, In] -> (out [B, T, H], final
    state, per-step states list over t). For tests and the reference."""
    outs, states = [], []
    step = STEP[cell]
    for t in range(x.shape[1]):
        y, state, _ = step(p, x[:, t], state)
        outs.append(y)
        states.append(state)
    return torch.stack(outs, dim=1), state, states
