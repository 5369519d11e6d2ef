"""Converters from real multi-view datasets (Human3.6M, MPI-INF-3DHP) to pose3d shards."""

from pose3d.data.convert.h36m import H36MOptions, convert_h36m
from pose3d.data.convert.h36m_official import H36MReleaseOptions, convert_h36m_release
from pose3d.data.convert.mpi_inf_3dhp import MpiInf3dhpOptions, convert_mpi_inf_3dhp
from pose3d.data.convert.writer import ConversionSummary

__all__ = ["ConversionSummary", "H36MOptions", "H36MReleaseOptions", "MpiInf3dhpOptions",
           "convert_h36m", "convert_h36m_release", "convert_mpi_inf_3dhp"]
