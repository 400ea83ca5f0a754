"""Sky-map estimators: `TSMapEstimator`, `ExcessMapEstimator` and their result, `FluxMaps`."""
from .core import EstimatorInputError, FluxMaps
from .excess import ExcessMapEstimator
from .ts import TSMapEstimator

__all__ = ["FluxMaps", "TSMapEstimator", "ExcessMapEstimator", "EstimatorInputError"]
