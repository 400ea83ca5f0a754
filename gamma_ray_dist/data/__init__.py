"""DL3 data access: data store, observation index, observations, events, GTIs, pointing.

Names and signatures mirror ``gammapy.data`` (gammapy 2.1).
"""
from .data_store import ALL_IRFS, REQUIRED_IRFS, DataStore, MissingRequiredHDU
from .event_list import EventList
from .fits_io import FitsFileCache, default_file_cache, make_path
from .grouping import TimeGrouping, group_by_observation, group_by_time_intervals
from .gti import GTI
from .hdu_index_table import HDUIndexTable, HDULocation
from .obs_table import ObservationTable
from .observations import Observation, ObservationMetaData, Observations
from .pointing import FixedPointingInfo, PointingMode

__all__ = [
    "ALL_IRFS",
    "REQUIRED_IRFS",
    "DataStore",
    "EventList",
    "FitsFileCache",
    "FixedPointingInfo",
    "GTI",
    "TimeGrouping",
    "group_by_observation",
    "group_by_time_intervals",
    "HDUIndexTable",
    "HDULocation",
    "MissingRequiredHDU",
    "Observation",
    "ObservationMetaData",
    "ObservationTable",
    "Observations",
    "PointingMode",
    "default_file_cache",
    "make_path",
]
