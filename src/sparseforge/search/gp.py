"""Gaussian-process surrogate and expected improvement (seed 003), in numpy float64.

Kernel (squared exponential with one lengthscale per parameter group, on the embedding of
:meth:`sparseforge.search.space.StageSpace.embed`)::

    k(a, b) = s_f^2 * exp(-1/2 * sum_g D_g(a, b) / l_g^2),   D_g = mean over group g's coordinates of (a_i - b_i)^2

plus i.i.d. observation noise ``s_n^2`` on the diagonal (training a network is noisy). Targets are
standardised before fitting (optionally after a monotone :func:`output_warp`; the search's objective
values are already ``log10 f``). The hyperparameters ``(log s_f^2, log l_1..l_G, log s_n^2)`` maximise
the log marginal likelihood plus weak log-normal priors (MAP; a handful of points cannot pin them down
otherwise), with L-BFGS-B and analytic gradients from a default start and ``restarts`` random starts.

The lengthscales are automatic relevance determination per *parameter*: every searched parameter
(a list parameter's items together, the Deep-n-Cheap-style distance of variable-length lists) has its own
lengthscale, so an irrelevant parameter gets a long one and stops steering the search.

Expected improvement for minimisation, as in the seed: with ``z = (f* - mu) / sigma``,
``EI = (f* - mu) Phi(z) + sigma phi(z)``, where ``sigma`` is the posterior standard deviation of the
noise-free f and ``f*`` the lowest *posterior mean* at the observed points
(:meth:`GaussianProcess.incumbent`): with noisy observations the lowest observed value is usually a lucky
draw, and improving on it would be a target the model itself does not believe in.

BLAS threads are limited to ``threads`` (default 1) during fits and predictions: on 2 shared cores a
multi-threaded 30x30 Cholesky only loses time.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.linalg.lapack import dpotri
from scipy.optimize import minimize
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata, yeojohnson

JITTER = 1e-9
LOG_2PI = math.log(2 * math.pi)
# bounds of the (natural) log hyperparameters, on standardised targets and unit-scaled inputs
BOUNDS_SF2 = (math.log(0.05), math.log(20.0))
BOUNDS_L = (math.log(0.03), math.log(10.0))
BOUNDS_SN2 = (math.log(1e-6), math.log(1.0))
# weak log-normal priors: (mean, sd) of the natural log
PRIOR_SF2 = (0.0, 1.5)
PRIOR_L = (math.log(0.5), 1.5)
PRIOR_SN2 = (math.log(1e-2), 2.0)


_CONTROLLER: list = []  # one threadpoolctl controller, made on first use (finding the libraries is slow)


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP threads (threadpoolctl) for the duration; no-op with ``n=None``."""
    if n is None:
        yield
        return
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    if _CONTROLLER[0] is None:  # pragma: no cover
        yield
        return
    with _CONTROLLER[0].limit(limits=n):
        yield


@dataclass(frozen=True)
class Hyper:
    """Kernel hyperparameters on the standardised scale: signal variance, one lengthscale per group,
    noise variance."""

    signal_var: float
    lengthscales: tuple[float, ...]
    noise_var: float

    def to_vector(self) -> np.ndarray:
        return np.log(np.array([self.signal_var, *self.lengthscales, self.noise_var], dtype=np.float64))

    @staticmethod
    def from_vector(theta: np.ndarray) -> Hyper:
        e = np.exp(np.asarray(theta, dtype=np.float64))
        return Hyper(float(e[0]), tuple(float(v) for v in e[1:-1]), float(e[-1]))


def group_sq_dists(a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group mean squared differences ``[G, len(a), len(b)]`` of embeddings ``a [n, D]``, ``b [m, D]``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.zeros((n_groups, a.shape[0], b.shape[0]))
    for g in range(n_groups):
        cols = groups == g
        if not cols.any():
            continue
        d = a[:, None, cols] - b[None, :, cols]
        out[g] = np.einsum("ijk,ijk->ij", d, d) / cols.sum()
    return out


def se_kernel(dists: np.ndarray, hyper: Hyper) -> np.ndarray:
    """Squared-exponential kernel (without noise) from group distances ``[G, n, m]``."""
    ls2 = np.square(np.asarray(hyper.lengthscales))[:, None, None]
    return hyper.signal_var * np.exp(-0.5 * (dists / ls2).sum(0))


def _log_prior(theta: np.ndarray) -> tuple[float, np.ndarray]:
    means = np.array([PRIOR_SF2[0], *[PRIOR_L[0]] * (len(theta) - 2), PRIOR_SN2[0]])
    sds = np.array([PRIOR_SF2[1], *[PRIOR_L[1]] * (len(theta) - 2), PRIOR_SN2[1]])
    z = (theta - means) / sds
    return float(-0.5 * np.sum(z * z)), -z / sds


def neg_log_posterior(theta: np.ndarray, dists: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative (log marginal likelihood + log prior) and its gradient in the log hyperparameters."""
    hyper = Hyper.from_vector(theta)
    n = len(y)
    kse = se_kernel(dists, hyper)
    k = kse + (hyper.noise_var + JITTER) * np.eye(n)
    try:
        low = cholesky(k, lower=True)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = cho_solve((low, True), y)
    lml = -0.5 * y @ alpha - np.log(np.diag(low)).sum() - 0.5 * n * LOG_2PI
    kinv, info = dpotri(low, lower=1)  # K^-1 from the Cholesky factor (lower triangle filled)
    if info != 0:  # pragma: no cover - potri fails only where cholesky already failed
        kinv = cho_solve((low, True), np.eye(n))
    else:
        kinv = np.tril(kinv) + np.tril(kinv, -1).T
    w = np.outer(alpha, alpha) - kinv  # d lml / dK = w / 2
    grad = np.empty_like(theta)
    grad[0] = 0.5 * np.sum(w * kse)
    ls2 = np.square(np.asarray(hyper.lengthscales))
    grad[1:-1] = 0.5 * np.einsum("ij,gij->g", w * kse, dists) / ls2
    grad[-1] = 0.5 * hyper.noise_var * np.trace(w)
    lp, dlp = _log_prior(theta)
    return float(-(lml + lp)), -(grad + dlp)


class GaussianProcess:
    """GP regression on embeddings ``X [n, D]`` with targets ``y [n]`` (standardised internally).

    ``groups[D]`` gives each embedding coordinate's lengthscale group. Without ``hyper`` the
    hyperparameters are fitted (:meth:`fit`); with it they are used as given (then set
    ``standardize=False`` to work on the raw targets, e.g. for hand-checked cases).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, hyper: Hyper | None = None,
                 standardize: bool = True, restarts: int = 2, seed: int = 0, threads: int | None = 1,
                 warm_start: Hyper | None = None) -> None:
        self.X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(self.X):
            raise ValueError(f"X has {len(self.X)} rows, y has {len(y)} values")
        if len(y) == 0:
            raise ValueError("a GP needs at least one observation")
        self.groups = np.asarray(groups, dtype=int)
        self.n_groups = int(self.groups.max()) + 1 if self.groups.size else 1
        self.threads = threads
        self.y_mean = float(y.mean()) if standardize else 0.0
        sd = float(y.std()) if standardize else 1.0
        self.y_std = sd if sd > 1e-12 else 1.0
        self.y = (y - self.y_mean) / self.y_std
        with blas_threads(threads):
            self.dists = group_sq_dists(self.X, self.X, self.groups, self.n_groups)
            self.hyper = hyper if hyper is not None else self._fit(restarts, seed, warm_start)
            self._factor()

    def _fit(self, restarts: int, seed: int, warm_start: Hyper | None = None) -> Hyper:
        """MAP hyperparameters: L-BFGS-B from ``warm_start`` (the previous fit: one more point rarely moves
        the optimum far, so this start converges in a few steps) or else from the prior's centre, and from
        ``restarts`` random points; the best optimum wins."""
        g = self.n_groups
        bounds = [BOUNDS_SF2] + [BOUNDS_L] * g + [BOUNDS_SN2]
        if warm_start is not None and len(warm_start.lengthscales) == g:
            lo, hi = np.array(bounds).T
            starts = [np.clip(warm_start.to_vector(), lo, hi)]
        else:
            starts = [np.array([PRIOR_SF2[0]] + [PRIOR_L[0]] * g + [PRIOR_SN2[0]])]
        rng = np.random.default_rng(seed)
        for _ in range(restarts):
            starts.append(np.array([rng.uniform(lo, hi) for lo, hi in bounds]))
        best = (np.inf, starts[0])
        for x0 in starts:
            try:
                res = minimize(neg_log_posterior, x0, args=(self.dists, self.y), jac=True, method="L-BFGS-B",
                               bounds=bounds, options={"maxiter": 200, "ftol": 1e-9})
            except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - numerical trouble in one start
                continue
            if np.isfinite(res.fun) and res.fun < best[0]:
                best = (float(res.fun), res.x)
        return Hyper.from_vector(best[1])

    def _factor(self) -> None:
        n = len(self.y)
        k = se_kernel(self.dists, self.hyper) + (self.hyper.noise_var + JITTER) * np.eye(n)
        self._low = cholesky(k, lower=True)
        self._alpha = cho_solve((self._low, True), self.y)

    def log_marginal_likelihood(self) -> float:
        """Log marginal likelihood of the standardised targets under the current hyperparameters."""
        n = len(self.y)
        return float(-0.5 * self.y @ self._alpha - np.log(np.diag(self._low)).sum() - 0.5 * n * LOG_2PI)

    def cross_kernel(self, Xs: np.ndarray) -> np.ndarray:
        """``k(Xs, X)`` ``[m, n]``, by one matrix product: the kernel's sum over groups of mean squared
        differences over lengthscale^2 is a squared Euclidean distance after scaling coordinate i by
        ``1 / (l_g sqrt(|g|))`` (same values as :func:`se_kernel` on :func:`group_sq_dists`)."""
        sizes = np.bincount(self.groups, minlength=self.n_groups).astype(np.float64)
        ls = np.asarray(self.hyper.lengthscales)
        scale = 1.0 / (ls[self.groups] * np.sqrt(sizes[self.groups]))
        a, b = Xs * scale, self.X * scale
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return self.hyper.signal_var * np.exp(-0.5 * np.maximum(d2, 0.0))

    def incumbent(self) -> float:
        """The lowest posterior mean of the noise-free f at the observed points (original units): the
        ``f*`` of expected improvement."""
        mu, _ = self.predict(self.X)
        return float(mu.min())

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the noise-free f at ``Xs [m, D]`` (original units)."""
        Xs = np.atleast_2d(np.asarray(Xs, dtype=np.float64))
        with blas_threads(self.threads):
            ks = self.cross_kernel(Xs)  # [m, n]
            mu = ks @ self._alpha
            v = solve_triangular(self._low, ks.T, lower=True)
            var = self.hyper.signal_var - np.einsum("ij,ij->j", v, v)
        sd = np.sqrt(np.maximum(var, 1e-18))
        return mu * self.y_std + self.y_mean, sd * self.y_std

    def condition_on_pending(self, Xp: np.ndarray) -> GaussianProcess:
        """A GP with the same hyperparameters that also "observed" ``Xp`` at its current mean (kriging
        believer): points being evaluated by other workers lose their uncertainty, so a second worker
        proposes something else."""
        Xp = np.atleast_2d(np.asarray(Xp, dtype=np.float64))
        if Xp.size == 0:
            return self
        mu, _ = self.predict(Xp)
        y = np.concatenate([self.y * self.y_std + self.y_mean, mu])
        gp = GaussianProcess.__new__(GaussianProcess)
        gp.X = np.vstack([self.X, Xp])
        gp.groups, gp.n_groups, gp.threads = self.groups, self.n_groups, self.threads
        gp.y_mean, gp.y_std = self.y_mean, self.y_std
        gp.y = (y - gp.y_mean) / gp.y_std
        gp.hyper = self.hyper
        with blas_threads(self.threads):
            gp.dists = group_sq_dists(gp.X, gp.X, gp.groups, gp.n_groups)
            gp._factor()
        return gp


YJ_LAMBDA = (-3.0, 3.0)
WARPS = ("none", "rank", "yeo-johnson")


def output_warp(y: np.ndarray, kind: str) -> np.ndarray:
    """A monotone warp of the objective values ``y [n]`` for the GP to fit: the order is kept, so the
    argmin (the incumbent trial) and the best trials are unchanged; EI is then computed in warped units.

    * ``"none"``: ``y`` unchanged.
    * ``"yeo-johnson"``: ``y`` standardised, then the Yeo-Johnson power transform with the maximum
      likelihood ``lambda`` (scipy.stats.yeojohnson), clipped to :data:`YJ_LAMBDA`: a concave transform
      (``lambda < 1``) pulls one outlier back towards the rest, e.g. a hopeless network whose
      ``log10 f = 1.5`` among values of -0.2 to 0.4 at w_c = 1. Independent of the units of ``y``.
    * ``"rank"``: normal scores ``Phi^-1((rank - 1/2) / n)`` (ties share their mean rank): a copula warp
      without parameters; the same for any increasing transform of ``y``.

    With an outlier far from the rest, linear targets make the fit explain it with tiny lengthscales and
    the posterior mean stops ordering the other points; either warp avoids that. The search uses
    ``sparseforge.search.sampler.WARP`` (default ``"none"``: on this project's benchmarks neither warp was
    better everywhere; the measurements are in the README)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    if kind == "none":
        return y.copy()
    if kind == "rank":
        return ndtri((rankdata(y) - 0.5) / len(y)) if len(y) else y.copy()
    if kind == "yeo-johnson":
        sd = float(y.std()) if len(y) else 0.0
        if sd <= 1e-12:
            return np.zeros_like(y)
        z = (y - y.mean()) / sd
        return yeojohnson(z, lmbda=float(np.clip(yeojohnson(z)[1], YJ_LAMBDA[0], YJ_LAMBDA[1])))
    raise ValueError(f"output warp {kind!r} is not one of {', '.join(WARPS)}")


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """EI for minimisation: ``(f* - mu) Phi(z) + sd phi(z)``, ``z = (f* - mu) / sd``; ``max(f* - mu, 0)``
    where ``sd`` is 0."""
    mu = np.asarray(mu, dtype=np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    imp = best - mu
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, imp / np.where(sd > 0, sd, 1.0), 0.0)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    ei = imp * ndtr(z) + sd * pdf
    return np.where(sd > 0, np.maximum(ei, 0.0), np.maximum(imp, 0.0))
