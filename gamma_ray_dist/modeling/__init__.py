"""Parameters, models, fit statistics and the iminuit-based `Fit` (gammapy-compatible API)."""
from .parameter import Parameter, Parameters
from .models import Models  # noqa: F401  (also imports the model registry)
from .fit import Fit, confidence_task, profile_point
from .fit_results import CovarianceResult, FitResult, OptimizeResult

__all__ = [
    "Parameter", "Parameters", "Fit", "FitResult", "OptimizeResult", "CovarianceResult",
    "profile_point", "confidence_task",
]
