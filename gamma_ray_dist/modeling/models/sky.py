"""Sky models: `SkyModel` (spectral x spatial) and `FoVBackgroundModel` (norm x dataset background)."""
from __future__ import annotations

import copy
import uuid
from typing import Any

import numpy as np

from ..parameter import Parameters, format_parameters
from .core import component_from_dict
from .spatial import SpatialModel
from .spectral import PowerLawNormSpectralModel, SpectralModel

__all__ = ["SkyModel", "FoVBackgroundModel", "subcovariance"]


def subcovariance(matrix: np.ndarray, parameters: Parameters, sub: Parameters) -> np.ndarray:
    """Rows/columns of ``matrix`` (over ``parameters``) for the parameter objects in ``sub``."""
    idx = [parameters.index(p) for p in sub]
    return np.asarray(matrix)[np.ix_(idx, idx)]


class _CompositeModel:
    """Shared covariance bookkeeping of models made of spectral/spatial components."""

    _covariance: np.ndarray | None = None
    _name: str
    spectral_model: SpectralModel
    spatial_model: SpatialModel | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def _components(self) -> list:
        return [m for m in (self.spectral_model, self.spatial_model) if m is not None]

    @property
    def parameters(self) -> Parameters:
        return Parameters.from_stack([m.parameters for m in self._components])

    @property
    def parameters_unique_names(self) -> list[str]:
        return [f"{m.type}.{name}" for m in self._components for name in m.parameters_unique_names]

    @property
    def covariance(self) -> np.ndarray:
        """Covariance over ``parameters``; diagonal blocks kept in sync with the components."""
        pars = self.parameters
        n = len(pars)
        cov = self._covariance if self._covariance is not None and self._covariance.shape == (n, n) else np.zeros((n, n))
        cov = cov.copy()
        start = 0
        for m in self._components:
            k = len(m.parameters)
            if isinstance(m, SpectralModel):
                cov[start:start + k, start:start + k] = m.covariance
            else:
                for i, p in enumerate(m.parameters):
                    cov[start + i, start + i] = np.nan_to_num(p.error**2, nan=1)
            start += k
        return cov

    @covariance.setter
    def covariance(self, matrix: Any) -> None:
        matrix = np.array(matrix, dtype=float)
        pars = self.parameters
        if matrix.shape != (len(pars), len(pars)):
            raise ValueError(f"Covariance of {self.name} must have shape {(len(pars),) * 2}, got {matrix.shape}")
        self._covariance = matrix
        start = 0
        for m in self._components:
            k = len(m.parameters)
            block = matrix[start:start + k, start:start + k]
            if isinstance(m, SpectralModel):
                m.covariance = block
            else:
                for i, p in enumerate(m.parameters):
                    p.error = np.sqrt(block[i, i])
            start += k

    def copy(self, **kwargs):
        """Deep copy (fresh parameter objects), optionally renamed with ``name=``."""
        new = copy.deepcopy(self)
        if "name" in kwargs:
            new._name = kwargs["name"]
        return new

    @property
    def frozen(self) -> bool:
        return all(p.frozen for p in self.parameters)

    def freeze(self, model_type: str | None = None) -> None:
        for m in self._components:
            if model_type in (None, m.type):
                m.freeze()

    def unfreeze(self, model_type: str | None = None) -> None:
        for m in self._components:
            if model_type in (None, m.type):
                m.unfreeze()


class SkyModel(_CompositeModel):
    """Source model: spectral model (dnde) times optional spatial model (sr-1).

    Parameters
    ----------
    spectral_model : `SpectralModel`
    spatial_model : `SpatialModel` or None
    name : str, optional
        Model name (random 8 characters if not given).
    datasets_names : list of str, optional
        Datasets the model applies to (None = all).
    """

    tag = ["SkyModel", "sky-model"]

    def __init__(
        self,
        spectral_model: SpectralModel,
        spatial_model: SpatialModel | None = None,
        name: str | None = None,
        datasets_names: list[str] | None = None,
        covariance_data: Any = None,
    ):
        if not isinstance(spectral_model, SpectralModel):
            raise TypeError(f"spectral_model must be a SpectralModel, got {type(spectral_model).__name__}")
        if spatial_model is not None and not isinstance(spatial_model, SpatialModel):
            raise TypeError(f"spatial_model must be a SpatialModel, got {type(spatial_model).__name__}")
        self.spectral_model = spectral_model
        self.spatial_model = spatial_model
        self._name = name if name is not None else uuid.uuid4().hex[:8]
        self.datasets_names = None if datasets_names is None else list(datasets_names)
        self._covariance = None
        if covariance_data is not None:
            self.covariance = covariance_data

    @property
    def position(self):
        return None if self.spatial_model is None else self.spatial_model.position

    @property
    def evaluation_radius(self):
        return None if self.spatial_model is None else self.spatial_model.evaluation_radius

    def to_dict(self, full_output: bool = False) -> dict:
        data: dict[str, Any] = {"name": self.name, "type": self.tag[0]}
        if self.datasets_names is not None:
            data["datasets_names"] = self.datasets_names
        data.update(self.spectral_model.to_dict(full_output))
        if self.spatial_model is not None:
            data.update(self.spatial_model.to_dict(full_output))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SkyModel":
        if "temporal" in data:
            raise NotImplementedError(f"Model {data.get('name')!r}: temporal models are not supported")
        spectral = component_from_dict("spectral", data)
        spatial = None
        if data.get("spatial") is not None:
            spatial = component_from_dict("spatial", data)
        return cls(spectral, spatial, name=data["name"], datasets_names=data.get("datasets_names"))

    def __str__(self) -> str:
        s = f"{type(self).__name__}\n\n"
        s += "  {:26}: {}\n".format("Name", self.name)
        s += "  {:26}: {}\n".format("Datasets names", self.datasets_names)
        s += "  {:26}: {}\n".format("Spectral model type", type(self.spectral_model).__name__)
        spatial = "" if self.spatial_model is None else type(self.spatial_model).__name__
        s += "  {:26}: {}\n".format("Spatial  model type", spatial)
        s += "  {:26}: {}\n".format("Temporal model type", "")
        s += "  Parameters:\n"
        s += format_parameters(self.parameters).replace("\n  ", "\n    ").replace("  ", "    ", 1)
        return s + "\n"

    def __repr__(self) -> str:
        return f"SkyModel(name={self.name!r}, spectral={self.spectral_model!r}, spatial={self.spatial_model!r})"


class FoVBackgroundModel(_CompositeModel):
    """Field-of-view background scaling: ``npred_bkg = background * spectral(E)`` for one dataset.

    Parameters
    ----------
    dataset_name : str
        Name of the dataset whose background template is scaled; the model is named ``<dataset_name>-bkg``.
    spectral_model : norm spectral model, optional
        Default `PowerLawNormSpectralModel` (norm free, tilt frozen).
    """

    tag = ["FoVBackgroundModel", "fov-bkg"]

    def __init__(self, dataset_name: str, spectral_model: SpectralModel | None = None, name: str | None = None,
                 covariance_data: Any = None):
        if spectral_model is None:
            spectral_model = PowerLawNormSpectralModel()
        if not spectral_model.is_norm_spectral_model:
            raise ValueError("FoVBackgroundModel needs a norm spectral model (e.g. PowerLawNormSpectralModel)")
        self.datasets_names = [dataset_name]
        self.spectral_model = spectral_model
        self.spatial_model = None
        self._name = name if name is not None else f"{dataset_name}-bkg"
        self._covariance = None
        if covariance_data is not None:
            self.covariance = covariance_data

    def evaluate_values(self, energy_tev: Any) -> np.ndarray:
        """Background scaling factor at energies (TeV)."""
        return self.spectral_model.evaluate_values(energy_tev)

    def to_dict(self, full_output: bool = False) -> dict:
        data: dict[str, Any] = {"type": self.tag[0], "datasets_names": self.datasets_names}
        data.update(self.spectral_model.to_dict(full_output))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "FoVBackgroundModel":
        names = data.get("datasets_names")
        if not names:
            raise ValueError("FoVBackgroundModel must define a dataset name (datasets_names)")
        if len(names) > 1:
            raise ValueError("FoVBackgroundModel can only be assigned to one dataset")
        if data.get("spatial") is not None:
            raise NotImplementedError("FoVBackgroundModel with a spatial norm model is not supported")
        spectral = None
        if data.get("spectral") is not None:
            spectral = component_from_dict("spectral", data)
        return cls(dataset_name=names[0], spectral_model=spectral, name=data.get("name"))

    def __str__(self) -> str:
        s = f"{type(self).__name__}\n\n"
        s += "  {:26}: {}\n".format("Name", self.name)
        s += "  {:26}: {}\n".format("Datasets names", self.datasets_names)
        s += "  {:26}: {}\n".format("Spectral model type", type(self.spectral_model).__name__)
        s += "  Parameters:\n"
        s += format_parameters(self.parameters).replace("\n  ", "\n    ").replace("  ", "    ", 1)
        return s + "\n"

    def __repr__(self) -> str:
        return f"FoVBackgroundModel(name={self.name!r}, spectral={self.spectral_model!r})"
