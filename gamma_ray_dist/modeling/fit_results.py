"""Result objects of `Fit`: `OptimizeResult`, `CovarianceResult`, `FitResult` (printable like gammapy's).

Results are picklable and light: the live `iminuit.Minuit` object (whose cost function references the
datasets) is dropped when a result is pickled, e.g. when a Ray worker returns it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table

__all__ = ["FitStepResult", "OptimizeResult", "CovarianceResult", "FitResult"]


class FitStepResult:
    """Common fields: backend, method, success, message."""

    def __init__(self, backend: str, method: str, success: bool, message: str):
        self._backend = backend
        self._method = method
        self._success = bool(success)
        self._message = message

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def method(self) -> str:
        return self._method

    @property
    def success(self) -> bool:
        return self._success

    @property
    def message(self) -> str:
        return self._message

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}\n\n"
            f"\tbackend    : {self.backend}\n"
            f"\tmethod     : {self.method}\n"
            f"\tsuccess    : {self.success}\n"
            f"\tmessage    : {self.message}\n"
        )

    def to_dict(self) -> dict:
        return {type(self).__name__: {"backend": self.backend, "method": self.method,
                                      "success": self.success, "message": self.message}}


class CovarianceResult(FitStepResult):
    """Covariance step result; ``matrix`` over ``models.parameters`` in parameter units."""

    def __init__(self, matrix: np.ndarray | None = None, **kwargs):
        self._matrix = matrix
        super().__init__(**kwargs)

    @property
    def matrix(self) -> np.ndarray | None:
        return self._matrix


class OptimizeResult(FitStepResult):
    """Optimisation step result.

    Attributes
    ----------
    models : `Models`
        Copy of the best-fit models.
    nfev : int
        Number of statistic evaluations by the optimiser.
    total_stat : float
        Statistic at the best-fit point.
    n_penalized : int
        Evaluations where the statistic was not finite (or raised) and a penalty was returned instead.
    trace : `~astropy.table.Table`
        Statistic and free parameter values per evaluation (if ``store_trace``).
    unconstrained : list of str
        Unique names (``crab.spectral.amplitude``) of free parameters kept at their start values because
        their model predicts no counts (e.g. a source outside the map); empty normally.
    """

    def __init__(self, models, nfev: int, total_stat: float, trace: Table | None = None, minuit: Any = None,
                 n_penalized: int = 0, unconstrained: list | None = None, **kwargs):
        self._models = models
        self._unconstrained = list(unconstrained or [])
        self._nfev = int(nfev)
        self._total_stat = float(total_stat)
        self._trace = trace if trace is not None else Table()
        self._minuit = minuit
        self._n_penalized = int(n_penalized)
        super().__init__(**kwargs)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_minuit"] = None  # its cost function holds the datasets; never ship it
        return state

    @property
    def minuit(self):
        return self._minuit

    @property
    def models(self):
        return self._models

    @property
    def parameters(self):
        return self._models.parameters

    @property
    def nfev(self) -> int:
        return self._nfev

    @property
    def total_stat(self) -> float:
        return self._total_stat

    @property
    def trace(self) -> Table:
        return self._trace

    @property
    def n_penalized(self) -> int:
        return self._n_penalized

    @property
    def unconstrained(self) -> list[str]:
        return list(getattr(self, "_unconstrained", []))

    def __str__(self) -> str:
        s = super().__str__()
        s += f"\tnfev       : {self.nfev}\n"
        s += f"\ttotal stat : {self.total_stat:.2f}\n\n"
        return s

    def to_dict(self) -> dict:
        out = super().to_dict()
        out[type(self).__name__].update(nfev=self.nfev, total_stat=self.total_stat, n_penalized=self.n_penalized,
                                        unconstrained=self.unconstrained)
        return out


class FitResult:
    """Optimisation plus covariance results; ``success`` is the AND of both."""

    def __init__(self, optimize_result: OptimizeResult | None = None,
                 covariance_result: CovarianceResult | None = None):
        self._optimize_result = optimize_result
        self._covariance_result = covariance_result

    @property
    def optimize_result(self) -> OptimizeResult | None:
        return self._optimize_result

    @property
    def covariance_result(self) -> CovarianceResult | None:
        return self._covariance_result

    @property
    def minuit(self):
        return self._optimize_result.minuit

    @property
    def parameters(self):
        return self._optimize_result.parameters

    @property
    def models(self):
        return self._optimize_result.models

    @property
    def total_stat(self) -> float:
        return self._optimize_result.total_stat

    @property
    def trace(self) -> Table:
        return self._optimize_result.trace

    @property
    def nfev(self) -> int:
        return self._optimize_result.nfev

    @property
    def backend(self) -> str:
        return self._optimize_result.backend

    @property
    def method(self) -> str:
        return self._optimize_result.method

    @property
    def message(self) -> str:
        return self._optimize_result.message

    @property
    def success(self) -> bool:
        ok = self._optimize_result.success
        if self._covariance_result is not None:
            ok &= self._covariance_result.success
        return bool(ok)

    def to_dict(self) -> dict:
        out: dict = {}
        for r in (self._optimize_result, self._covariance_result):
            if r is not None:
                out.update(r.to_dict())
        return out

    def __str__(self) -> str:
        s = ""
        if self._optimize_result is not None:
            s += str(self._optimize_result)
        if self._covariance_result is not None:
            s += str(self._covariance_result)
        return s
