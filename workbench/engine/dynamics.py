"""Why the gradient vanishes or explodes: the recurrence's own dynamics on the probe batch.

Per recurrent layer and direction (a bidirectional layer's reverse direction is reported
as ``NAME.reverse``), at the weights of the moment, no parameter's .grad touched:

- ``jacobian_norms`` [T]: the spectral norm of the one-step Jacobian ds_t/ds_{t-1} of the
  carried state s (h, or for an LSTM [h; c]: the gradient reaches back through both),
  mean over the batch. Lanczos (power iteration's Krylov refinement) on J^T J, one
  Jacobian-vector product and one vector-Jacobian product (both backward passes of the
  step's graph) per iteration, through the cell's
  own step (``CellOps.transition``); all T steps at once, since given s_{t-1} each step's
  Jacobian is independent of the others ((t, row) pairs are rows of one batch).
  ||dL/dh_t|| can fall by at most the product of these going back in time
  (``records.Dynamics.jacobian_product``).
- ``lyapunov`` [k]: the leading finite-time Lyapunov exponents of s along the batch's
  trajectory: k vectors pushed back from the last step through each step's transposed
  Jacobian (as backpropagation does; in the limit the same exponents as forward),
  re-orthonormalised by QR; exponent i = (1/T) sum_t log |R_t[i, i]|, mean over the batch.
  < 0: perturbations (and gradients) shrink per step, > 0: they grow (chaos).
- ``spectra``: per gate block of W_hh [H, H] (``CellOps.recurrent_blocks``: an LSTM's
  i/f/g/o, a GRU's r/z/n, an RNN's one): spectral radius, largest singular value and the
  largest-modulus eigenvalues (at most ``max_eigenvalues``), in float64 on the host.
- ``gates`` (gated cells): per gate, the mean and the saturation: the fraction of values
  within 5% of the range's width from either end (a sigmoid gate: < 0.05 or > 0.95; a
  tanh one: < -0.9 or > 0.9), over batch, steps and units.
- ``trajectories``: each row's path h_1..h_T (in the order the direction reads it)
  projected on the three leading principal components of all the rows' hidden states
  (PCA by SVD), the share of variance each explains, and each row's class where the
  batch has one per row (a classification task); of more rows than the rest
  (``trajectory_rows``: one forward of the step without gradients).

Padded rows (the probe batch's true lengths, recorded with the layer inputs) count only
their real steps: a bidirectional layer's reverse direction starts at each row's last
real step, as the model's own forward does (model.RowAlignment), and the padding is left
out of every quantity (a step where no row is real: NaN in ``jacobian_norms``; the
Lyapunov vectors start at each row's last real step and each row's exponents are over
its own length; the gates and the PCA read the real steps only). The states come from
one forward with the layer-input taps (no gradients), the layer's initial state
included (a TBPTT chunk's carried state, an encoder's bridge).

Imports torch, never Qt.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from workbench import cells
from workbench.engine.model import RowAlignment

SATURATION = 0.05  # share of a gate's range at either end counted as saturated


@dataclass
class DynamicsSettings:
    power_iterations: int = 8  # Lanczos iterations on J^T J per step (each one JVP + one VJP)
    lyapunov_vectors: int = 3  # k tangent vectors: the leading k exponents
    max_eigenvalues: int = 64  # per block: the largest in modulus (the complex-plane plot)
    max_rows: int = 4  # the first rows of the probe batch (the cost grows with rows * T)
    # the trajectory's rows (at least max_rows): one forward of the step, no gradients, so
    # many inputs (a classification batch's classes) cost little
    trajectory_rows: int = 16


def _flat(state: tuple) -> torch.Tensor:
    return torch.cat(state, dim=-1)  # S x [N, H] -> [N, S*H]


def _unflat(s: torch.Tensor, parts: int) -> tuple:
    return tuple(s.chunk(parts, dim=-1))


def jacobian_norms(f: Callable, u: torch.Tensor, states: torch.Tensor, parts: int, iterations: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Spectral norm of ds'/ds for every row: f the transition, u [N, U] its inputs, states
    [N, n] (n = parts*H) where it is linearised. -> (sigma [N], gates {name: [N, H]} at
    those states). Lanczos on A = J^T J, power iteration's Krylov refinement: each
    iteration one A v, the Krylov basis kept orthonormal; sigma is the square root of the
    largest Ritz value, a lower bound that converges much faster than ||J v|| of plain
    power iteration with as many products (random tanh RNNs, H = 32 / 128: at worst 0.5%
    / 1.2% below the exact norm after 8 iterations, 0.02% / 0.7% after 10; power
    iteration's ||J v|| after 6: 8% below). The step's graph is built once: J^T w is a
    backward pass, J v the backward of that one with respect to w (double backward)."""
    s = states.detach().requires_grad_(True)
    nxt, gates = f(u, _unflat(s, parts))
    out = _flat(nxt)  # [N, n]
    dummy = torch.zeros_like(out, requires_grad=True)
    (pull,) = torch.autograd.grad(out, s, dummy, create_graph=True)  # J^T dummy, linear in dummy

    def apply(v):  # J^T J v
        (jv,) = torch.autograd.grad(pull, dummy, v, retain_graph=True)
        return torch.autograd.grad(out, s, jv, retain_graph=True)[0]

    N, n = states.shape
    m = max(1, min(iterations, n))
    v = torch.randn(states.shape, generator=generator, dtype=states.dtype, device="cpu").to(states.device)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    basis = [v]  # m x [N, n]
    alphas, betas = [], []
    for j in range(m):
        w = apply(basis[j])
        alphas.append((w * basis[j]).sum(dim=-1))
        if j == m - 1:
            break
        V = torch.stack(basis, dim=1)  # [N, j+1, n]
        for _ in range(2):  # full re-orthogonalisation, twice (rounding)
            w = w - torch.einsum("bk,bkn->bn", torch.einsum("bkn,bn->bk", V, w), V)
        beta = w.norm(dim=-1)
        betas.append(beta)
        basis.append(w / beta.clamp_min(1e-30).unsqueeze(-1))  # a zero w: a zero vector, Ritz value 0
    tri = torch.diag_embed(torch.stack(alphas, dim=-1))  # [N, m, m]
    if betas:
        off = torch.diag_embed(torch.stack(betas, dim=-1), offset=1)
        tri = tri + off + off.transpose(-1, -2)
    top = torch.linalg.eigvalsh(tri.detach())[..., -1]
    return top.clamp_min(0).sqrt().detach(), {k: g.detach() for k, g in gates.items()}


def trajectory_and_lyapunov(f: Callable, u: torch.Tensor, start: tuple, k: int,
                            generator: torch.Generator | None = None,
                            lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the transition over time from ``start`` (S x [B, H]) with inputs u [B, T, U].
    -> (the state each step read, s_{t-1} [T, B, n]; the leading k finite-time Lyapunov
    exponents per row [B, k], float64). ``lengths`` [B]: row b's real steps are its
    first lengths[b]; its vectors start at its last real one, its exponents are the
    mean over its real steps (a row of length 0: zeros).

    The exponents are those of the adjoint (backpropagation) dynamics, which in the
    limit are the forward dynamics' own (Oseledets): k orthonormal vectors go backwards
    from the last step through each step's J_t^T (one backward pass of that step, the k
    vectors as k copies of the rows), re-orthonormalised by QR; exponent i = (1/T) sum_t
    log |R_t[i, i]|. That is how a gradient travels back in time: < 0 it shrinks per step."""
    B, T = u.shape[:2]
    parts = len(start)
    s = _flat(start).detach()  # [B, n]
    n = s.shape[-1]
    k = max(0, min(k, n))
    reps = max(k, 1)
    # the trajectory on reps copies of the rows, with its graph: row r*B + b is copy r of row b
    cur = s.repeat(reps, 1).requires_grad_(k > 0)
    ut = u.repeat(reps, 1, 1)
    seen = [cur]
    with torch.enable_grad() if k > 0 else torch.no_grad():
        for t in range(T):
            seen.append(_flat(f(ut[:, t], _unflat(seen[-1], parts))[0]))
    prev = torch.stack([x[:B].detach() for x in seen[:-1]]) if T else s.new_zeros(0, B, n)
    logs = torch.zeros(B, k, dtype=torch.float64, device=s.device)
    if k == 0 or T == 0:
        return prev, logs
    q = torch.randn(B, n, k, generator=generator, dtype=s.dtype, device="cpu").to(s.device)
    q = torch.linalg.qr(q)[0]  # [B, n, k] orthonormal columns
    tiny = torch.finfo(s.dtype).tiny
    lengths = None if lengths is None else lengths.to(s.device).long().clamp(0, T)  # [B]
    for t in range(T, 0, -1):
        cot = q.permute(2, 0, 1).reshape(k * B, n)  # the k vectors as the k copies' cotangents
        z = torch.autograd.grad(seen[t], seen[t - 1], cot, retain_graph=t > 1)[0]  # J_t^T q [k*B, n]
        q_new, r = torch.linalg.qr(z.reshape(k, B, n).permute(1, 2, 0))  # [B, n, k]
        step_logs = torch.diagonal(r, dim1=-2, dim2=-1).abs().clamp_min(tiny).double().log()  # [B, k]
        if lengths is None:
            q, logs = q_new, logs + step_logs
        else:  # step t is padding for rows shorter than t: their vectors wait at their last real step
            real = t <= lengths  # [B]
            q = torch.where(real[:, None, None], q_new, q)
            logs = logs + torch.where(real[:, None], step_logs, 0.0)
    if lengths is None:
        return prev, logs / T
    return prev, logs / lengths.clamp_min(1).double()[:, None]


def gate_stats(gates: dict, ranges: dict, keep: torch.Tensor | None = None) -> dict:
    """{name: [N, H]} -> {name: (mean, saturation)} (0-d tensors); gates of a free range
    skipped; ``keep`` [N] bool: only those rows (the real steps of padded rows)."""
    out = {}
    for name, g in gates.items():
        kind = ranges.get(name)
        if kind not in ("unit", "tanh"):
            continue
        if keep is not None:
            g = g[keep]
        lo, hi = (0.0, 1.0) if kind == "unit" else (-1.0, 1.0)
        edge = SATURATION * (hi - lo)
        sat = ((g < lo + edge) | (g > hi - edge)).float().mean()
        out[name] = (g.float().mean(), sat)
    return out


def block_spectra(blocks: dict, max_eigenvalues: int) -> dict:
    """{block: [H, H]} -> {block: {"radius", "sigma_max", "eigenvalues": [[re...], [im...]]}}
    (float64 on the host; the eigenvalues largest in modulus first, at most max_eigenvalues)."""
    if not blocks:
        return {}
    names = list(blocks)
    host = torch.stack([blocks[n].detach() for n in names]).double().cpu().numpy()  # one transfer
    out = {}
    for name, w in zip(names, host):
        eig = np.linalg.eigvals(w)
        order = np.argsort(-np.abs(eig))[:max_eigenvalues]
        out[name] = {"radius": float(np.abs(eig).max()) if eig.size else 0.0,
                     "sigma_max": float(np.linalg.norm(w, 2)) if w.size else 0.0,
                     "eigenvalues": [eig.real[order].tolist(), eig.imag[order].tolist()]}
    return out


def direction_dynamics(ops, direction, x: torch.Tensor, start: tuple, settings: DynamicsSettings,
                       generator: torch.Generator | None = None, lengths: torch.Tensor | None = None) -> dict:
    """One direction over x [B, T, In] (in the order it reads it) from ``start`` (S x
    [B, H]); ``lengths`` [B]: each row's real steps are its first lengths[b] in that
    order (None: all). -> {"jacobian": [B, T] per row (device), "lyapunov": [k] float64
    (mean over the rows with a real step), "gates": {name: (mean, saturation)}} (device
    tensors)."""
    f = ops.transition(direction)
    u = ops.input_part(direction, x)  # [B, T, U]
    B, T = u.shape[:2]
    prev, lyap = trajectory_and_lyapunov(f, u, start, settings.lyapunov_vectors, generator, lengths)  # [T, B, n]
    parts = len(start)
    # all (t, row) pairs at once: row t*B + b reads u[b, t] and s_{t-1}[b]
    sigma, gates = jacobian_norms(f, u.transpose(0, 1).reshape(T * B, -1), prev.reshape(T * B, -1), parts,
                                  settings.power_iterations, generator)
    real = None if lengths is None else real_steps(lengths, T)  # [B, T]
    ranges = {g.name: g.range for g in ops.cell.gate_info}
    if real is None:
        lyap_mean = lyap.mean(dim=0)
    else:
        whole = real.any(dim=1)  # rows with a real step
        lyap_mean = (lyap * whole[:, None]).sum(dim=0) / whole.sum().clamp_min(1)
    return {"jacobian": sigma.view(T, B).t(), "lyapunov": lyap_mean,
            "gates": gate_stats(gates, ranges, None if real is None else real.t().reshape(T * B))}


@torch.no_grad()
def direction_trajectory(ops, direction, x: torch.Tensor, start: tuple,
                         lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One direction's hidden states h_1..h_T over x [B, T, In] (in the order it reads
    it) from ``start``, one forward of the step without gradients, in their PCA (see
    pca_trajectory; padded steps NaN). None for T = 0."""
    f = ops.transition(direction)
    u = ops.input_part(direction, x)  # [B, T, U]
    T = u.shape[1]
    if not T:
        return None
    H = start[0].shape[-1]
    s, hs = tuple(start), []
    for t in range(T):
        s = tuple(f(u[:, t], s)[0])
        hs.append(_flat(s)[..., :H])  # h_t [B, H] (the carried state's first part)
    return pca_trajectory(torch.stack(hs), None if lengths is None else real_steps(lengths, T).t())


@torch.no_grad()
def module_states(rnn, x: torch.Tensor, state, align: RowAlignment | None, D: int, H: int) -> list | None:
    """Per direction h_1..h_T [B, T, H] in time order (a reverse direction's zero on the
    padding) from one call of the layer's own module (its kernel: far cheaper than a
    Python loop over the step), as the model's forward reads the rows. None when its
    output is not [B, T, D*H] (a convolutional cell's grid: the step loop instead)."""
    out = rnn(x, state, align=align)[0]
    if out.dim() != 3 or out.shape[-1] != D * H:
        return None
    return [out[..., d * H:(d + 1) * H] for d in range(D)]


def real_steps(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """lengths [B] -> [B, T] bool: step t of row b is real (t < lengths[b])."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths.to(torch.long)[:, None]


def masked_step_mean(per_row: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """[B, T] per row and step, [B, T] bool real steps (None: all) -> [T] the mean over
    the rows where step t is real (NaN where none is)."""
    if real is None:
        return per_row.mean(dim=0)
    count = real.sum(dim=0)  # [T]
    total = torch.where(real, per_row, 0.0).sum(dim=0)
    return torch.where(count > 0, total / count.clamp_min(1), torch.nan)


def pca_trajectory(h: torch.Tensor, real: torch.Tensor | None = None,
                   components: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """h [T, B, H] -> (each row's path in the space of the ``components`` leading
    principal components of all its states [B, T, components], the share of variance
    each explains [components]). ``real`` [T, B] bool: only those states count (the
    others are NaN in the path: padding)."""
    T, B, H = h.shape
    flat = h.reshape(T * B, H).double()
    # an exploding run's states may overflow: those steps are left out (NaN in the path)
    ok = torch.isfinite(flat).all(dim=1, keepdim=True)  # [T*B, 1]
    if real is not None:
        ok = ok & real.reshape(T * B, 1)
    flat = torch.where(ok, flat, 0.0)
    n_ok = ok.sum().clamp_min(1)
    centred = torch.where(ok, flat - flat.sum(dim=0) / n_ok, 0.0)
    _u, sv, vh = torch.linalg.svd(centred, full_matrices=False)  # vh [r, H]
    c = components
    k = min(c, vh.shape[0])
    axes = torch.zeros(H, c, dtype=flat.dtype, device=flat.device)
    axes[:, :k] = vh[:k].t()
    total = sv.pow(2).sum().clamp_min(1e-300)
    explained = torch.zeros(c, dtype=flat.dtype, device=flat.device)
    explained[:k] = sv[:k].pow(2) / total
    path = torch.where(ok, centred @ axes, torch.nan)
    return path.view(T, B, c).transpose(0, 1), explained


def _start_states(ops, state, D: int, B: int, H: int, like: torch.Tensor) -> list[tuple]:
    """Per direction the carried state tuple (each [B, H]) a layer starts from."""
    if state is None:
        return [tuple(like.new_zeros(B, H) for _ in range(ops.cell.state_count)) for _ in range(D)]
    parts = ops.state_parts(state)  # each [D, B, H]
    return [tuple(p[d].to(like.dtype) for p in parts) for d in range(D)]


def layer_inputs(model, forward: Callable[[], object]) -> dict:
    """Run ``forward()`` (the model once on the probe batch, unrolled=True, its output
    unused) recording the layer inputs: {"names", "taps": each layer's input [B, T, In], "initials": its initial
    state or None, "lengths": its rows' true lengths [B] or None} (what
    exact_hidden_grad_norm_tensors(inputs=...) also gives)."""
    model.record_inputs = True
    try:
        with torch.no_grad():
            forward()
        probe = model.probe
        return {"names": list(probe.layer_names), "taps": [x.detach() for x in probe.taps],
                "initials": list(probe.initials), "lengths": list(probe.lengths)}
    finally:
        model.record_inputs = False
        model.probe = None


@torch.no_grad()
def model_dynamics(model, forward: Callable[[], object] | None = None, settings: DynamicsSettings | None = None,
                   seed: int = 0, inputs: dict | None = None, labels: torch.Tensor | None = None) -> dict:
    """The dynamics of every recurrent layer on the probe batch: fed either by
    ``forward()`` (see layer_inputs) or by ``inputs`` the probe recorded. ``labels`` [B]:
    each row's class (a classification batch), kept with the trajectories. -> the
    Dynamics record's fields: {"jacobian_norms": {layer: [T]}, "lyapunov": {layer: [k]},
    "spectra": {layer: {block: ...}}, "gates": {layer: {gate: {"mean", "saturation"}}},
    "trajectories": {layer: {"rows", "explained"[, "labels"]}}}, host values."""
    settings = settings or DynamicsSettings()
    generator = torch.Generator().manual_seed(seed)  # its own: the training run's RNG is not touched
    if inputs is None:
        inputs = layer_inputs(model, forward)
    names, taps, initials = inputs["names"], inputs["taps"], inputs["initials"]
    all_lengths = inputs.get("lengths") or [None] * len(names)
    layers = {name: (spec, rnn) for name, spec, rnn in model.recurrent_layers()}
    jac, lyap, gate_out, spectra, paths = {}, {}, {}, {}, {}
    for name, x, state, lengths in zip(names, taps, initials, all_lengths):
        spec, rnn = layers[name]
        ops = cells.ops(spec.cell)
        directions = ops.directions(rnn)
        B = x.shape[0]
        rows = min(B, settings.max_rows) if settings.max_rows else B
        trows = max(rows, min(B, settings.trajectory_rows))  # the trajectory's rows: the first trows
        x = x[:trows].detach()  # [B'', T, In]
        T = x.shape[1]
        align = None
        if lengths is not None:
            lengths = lengths[:trows].to(x.device).long().clamp(0, T)  # [B'']
            # the model's own reading of padded rows: the reverse direction from each row's last real step
            align = RowAlignment.of(lengths, T, x.device)
        few = None if lengths is None else lengths[:rows]  # the instruments' rows [B']
        real = None if few is None else real_steps(few, T)  # [B', T]
        if state is not None:
            state = tuple(p[:, :trows] for p in state) if ops.multi else state[:, :trows]
        starts = _start_states(ops, state, len(directions), trows, rnn.hidden_size, x)
        # the trajectory's states: the module's own forward over the trajectory's rows
        hs = module_states(rnn, x, state, align, len(directions), rnn.hidden_size) if T else None
        for d, (direction, start) in enumerate(zip(directions, starts)):
            key = name + (".reverse" if d else "")
            # the reverse direction reads each row backwards from its last real step
            # (padding, if any, last); its real steps then come first, as the forward's do
            seq = (align.flip(x) if align is not None else x.flip(1)) if d else x
            with torch.enable_grad():  # (torch.func needs autograd on; nothing reaches the parameters)
                out = direction_dynamics(ops, direction, seq[:rows], tuple(p[:rows] for p in start), settings,
                                         generator, few)
            per_row = out["jacobian"]  # [B', T] in the order the direction read
            if d:  # back to time order: row b's read step p is its time step flip_index[b, p]
                per_row = (RowAlignment(align.flip_index[:rows], align.mask[:rows]).flip(per_row.unsqueeze(-1))
                           .squeeze(-1) if align is not None else per_row.flip(1))
            jac[key] = masked_step_mean(per_row, real)
            lyap[key] = out["lyapunov"]
            if out["gates"]:
                gate_out[key] = out["gates"]
            if hs is not None:  # in the order the direction reads (as ``seq``), padding last
                h = hs[d] if not d else (align.flip(hs[d]) if align is not None else hs[d].flip(1))
                path = pca_trajectory(h.transpose(0, 1), None if lengths is None else real_steps(lengths, T).t())
            else:
                path = direction_trajectory(ops, direction, seq, start, lengths)
            if path is not None:
                paths[key] = path
            spectra[key] = block_spectra(ops.recurrent_blocks(direction, rnn.hidden_size), settings.max_eigenvalues)
    # one transfer for everything on the device
    flat = [t for t in jac.values()] + [t for t in lyap.values()] + \
        [v for g in gate_out.values() for pair in g.values() for v in pair] + \
        [t for pair in paths.values() for t in pair]
    host = torch.cat([t.reshape(-1).double() for t in flat]).cpu().numpy() if flat else np.zeros(0)
    at = 0

    def take(n: int) -> np.ndarray:
        nonlocal at
        at += n
        return host[at - n:at]

    jac_h = {k: take(v.numel()) for k, v in jac.items()}
    lyap_h = {k: take(v.numel()) for k, v in lyap.items()}
    gates_h = {k: {g: {"mean": float(take(1)[0]), "saturation": float(take(1)[0])} for g in v}
               for k, v in gate_out.items()}
    traj_h = {}
    row_labels = None
    if labels is not None and labels.dim() == 1 and not labels.is_floating_point():
        row_labels = [int(v) for v in labels.detach().cpu().tolist()]
    for k, (path, explained) in paths.items():
        xy = take(path.numel()).reshape(path.shape)  # [B, T, C]
        traj_h[k] = {"rows": [[row[:, c].tolist() for c in range(row.shape[1])] for row in xy],
                     "explained": take(explained.numel()).tolist()}
        if row_labels is not None:
            traj_h[k]["labels"] = row_labels[:len(xy)]
    return {"jacobian_norms": jac_h, "lyapunov": lyap_h, "spectra": spectra, "gates": gates_h,
            "trajectories": traj_h}
