"""The statistics behind the verdicts (node_lab/report/verdicts.py), without scipy.

- :func:`student_t_sf`: the upper tail P(T > t) of Student's t with ``df`` (real, > 0) degrees of
  freedom, through the regularised incomplete beta function I_x(df/2, 1/2) with x = df / (df + t²),
  evaluated by its continued fraction (modified Lentz; Numerical Recipes §6.4).
- :func:`welch_one_sided`: Welch's unequal-variance t-test of H1: mean(a) > mean(b) (or <), with the
  Welch–Satterthwaite degrees of freedom.
- :func:`binomial_half_width`: the normal-approximation 95 % half-width of an accuracy on n images.

Why Welch and not a permutation test: the papers' protocols have 3 seeds per arm; an exact
permutation test of 3 against 3 has only C(6, 3) = 20 relabellings, so its smallest one-sided p is
1/20 = 0.05 and it can never reject at α = 0.05 (strictly). Welch's test has power at n = 3, and
does not assume equal variances (SONODE and ANODE spread differently). Its normality assumption is
helped by testing MSE-like metrics on a log scale (claims say ``log: true``).
"""

from __future__ import annotations

import math


def _betacf(a: float, b: float, x: float, eps: float = 1e-15, max_iter: int = 500) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def mean_sd(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, sd


def welch_one_sided(a: list[float], b: list[float], alternative: str = "greater") -> tuple[float, float, float]:
    """(t, df, p) of Welch's test of H1: mean(a) > mean(b) (``greater``) or mean(a) < mean(b) (``less``).
    Needs ≥ 2 values per arm. Two arms without spread: t = ±inf (p 0 or 1), or p = 0.5 if equal."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs at least 2 values per arm")
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se2 = va + vb
    if se2 == 0.0:
        t = 0.0 if ma == mb else math.copysign(math.inf, ma - mb)
        df = float(len(a) + len(b) - 2)
    else:
        t = (ma - mb) / math.sqrt(se2)
        df = se2 * se2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    if alternative == "less":
        t_dir = -t
    else:
        t_dir = t
    p = 0.5 if t_dir == 0.0 else student_t_sf(t_dir, df)
    return t, df, p


def binomial_half_width(p: float, n: int, z: float = 1.959963984540054) -> float:
    """Normal-approximation 95 % half-width of a proportion p measured on n trials (fractions)."""
    if not 0.0 <= p <= 1.0 or n <= 0:
        raise ValueError(f"need 0 <= p <= 1 and n > 0, got p={p}, n={n}")
    return z * math.sqrt(p * (1.0 - p) / n)
