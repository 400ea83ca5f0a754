"""Dispatch a GADF IRF HDU to its reader from the HDUCLAS2/HDUCLAS4 header keywords."""
from __future__ import annotations

from pathlib import Path

from astropy.io import fits

from ..errors import IRFError
from .aeff import EffectiveAreaTable2D
from .background import Background2D, Background3D
from .edisp import EnergyDispersion2D
from .parametric import EnergyDependentMultiGaussPSF, PSFKing
from .psf import PSF3D

__all__ = ["IRF_CLASSES", "irf_class_from_header", "irf_from_hdu"]

#: gammapy class tag -> class
IRF_CLASSES = {
    cls.tag: cls
    for cls in (EffectiveAreaTable2D, EnergyDispersion2D, PSF3D, EnergyDependentMultiGaussPSF,
                PSFKing, Background3D, Background2D)
}

# HDUCLAS2 -> IRF type, as gammapy (RPSF -> psf, EFF_AREA -> aeff)
_TYPES = {"EFF_AREA": "aeff", "AEFF": "aeff", "EDISP": "edisp", "RPSF": "psf", "PSF": "psf",
          "BKG": "bkg"}


def irf_class_from_header(header: fits.Header) -> type | None:
    """IRF class named by a header, or None.

    Current GADF: HDUCLAS4 is the class (AEFF_2D, EDISP_2D, PSF_TABLE, PSF_3GAUSS, PSF_KING,
    BKG_3D, BKG_2D). Older files: HDUCLAS4 is a suffix ('2D', '3D', '3GAUSS', 'KING', 'TABLE') and
    HDUCLAS2 names the type ('EFF_AREA', 'EDISP', 'RPSF', 'BKG'), as gammapy's CTA-1DC workaround.
    """
    clas2 = str(header.get("HDUCLAS2", "")).strip().upper()
    clas4 = str(header.get("HDUCLAS4", "")).strip().lower()
    hdu_type = _TYPES.get(clas2)
    if hdu_type is None:
        return None
    if clas4 in IRF_CLASSES:
        cls = IRF_CLASSES[clas4]
    else:
        cls = IRF_CLASSES.get(f"{hdu_type}_{clas4}")
    if cls is None or not cls.tag.startswith(hdu_type):
        return None
    return cls


def irf_from_hdu(hdu: fits.BinTableHDU, filename: str | Path | None = None, obs_id: int | None = None):
    """Read any supported IRF from a GADF HDU, dispatching on HDUCLAS2/HDUCLAS4.

    Raises
    ------
    IRFError
        When the header names no supported IRF class.
    """
    cls = irf_class_from_header(hdu.header)
    if cls is None:
        raise IRFError(
            f"HDU '{hdu.name}': unknown IRF class HDUCLAS2={hdu.header.get('HDUCLAS2')!r}, "
            f"HDUCLAS4={hdu.header.get('HDUCLAS4')!r}; supported: {sorted(IRF_CLASSES)}",
            obs_id if obs_id is not None else hdu.header.get("OBS_ID"), filename,
        )
    return cls.from_hdu(hdu, filename=filename, obs_id=obs_id)
