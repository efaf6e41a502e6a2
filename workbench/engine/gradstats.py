"""How a gradient profile over time decays: plain numpy, shared by the CLI and the GUI."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Decay:
    ratio_first_last: float  # ||g_1|| / ||g_T||
    factor_per_step: float  # multiplier per step going back in time (<1 vanishing, >1 exploding)

    def describe(self) -> str:
        f = self.factor_per_step
        if not math.isfinite(f) or f <= 0:
            return "no gradient reached the early steps"
        if abs(math.log(f)) < 1e-3:
            return "flat through time"
        if f < 1:
            return f"halves every {math.log(0.5) / math.log(f):.3g} steps back in time"
        return f"doubles every {math.log(2.0) / math.log(f):.3g} steps back in time"


def fit_decay(profile: np.ndarray) -> Decay:
    """profile: [T] gradient norms over t = 1..T. Fits log||g_t|| = a + b t by least
    squares over the finite, positive entries; going back one step multiplies the norm
    by exp(-b)."""
    g = np.asarray(profile, dtype=np.float64)
    ok = np.isfinite(g) & (g > 0)
    first, last = g[0] if g.size else 0.0, g[-1] if g.size else 0.0
    ratio = float(first / last) if last > 0 and np.isfinite(first) and np.isfinite(last) else float("nan")
    if ok.sum() < 2:
        return Decay(ratio, 0.0 if g.size and not ok[0] else float("nan"))
    t = np.nonzero(ok)[0].astype(np.float64)
    slope = np.polyfit(t, np.log(g[ok]), 1)[0]
    return Decay(ratio, float(math.exp(-slope)))


def summary_lines(profiles: dict[str, np.ndarray]) -> list[str]:
    """One line per layer: ratio and fitted decay (the CLI's end-of-run summary)."""
    lines = []
    for name, profile in profiles.items():
        d = fit_decay(profile)
        ratio = f"{d.ratio_first_last:.3g}"
        if d.ratio_first_last == 0:
            ratio = "0 (||dL/dh_1|| underflowed: below the float range)"
        lines.append(f"{name}: ||dL/dh_1|| / ||dL/dh_T|| = {ratio}; "
                     f"x{d.factor_per_step:.4g} per step, {d.describe()}")
    return lines


def dynamics_lines(record) -> list[str]:
    """One line per layer (and reverse direction) of a Dynamics record: W_hh's largest
    spectral radius over its gate blocks, the leading Lyapunov exponent, the mean
    one-step Jacobian norm (the CLI's end-of-run summary, beside the gradient decay)."""
    lines = []
    for name in record.jacobian_norms:
        radius = record.radius(name)
        lyap = record.lyapunov.get(name)
        lead = float(lyap[0]) if lyap is not None and len(lyap) else math.nan
        jac = np.asarray(record.jacobian_norms[name], dtype=np.float64)
        mean = float(np.mean(jac)) if jac.size else math.nan
        what = ""
        if math.isfinite(lead):
            what = f" (x{math.exp(lead):.3g} per step: {'forgetting' if lead < 0 else 'chaotic'})"
        lines.append(f"{name}: spectral radius of W_hh {radius:.4g}; leading Lyapunov exponent {lead:.4g}{what}; "
                     f"mean ||ds_t/ds_(t-1)|| {mean:.4g}")
    return lines
