"""energysim: energy and cycles of sparse DNNs on systolic-array accelerators.

Public API
----------
load_profile, dump_profile, Profile, SpecError   hardware profiles (``energysim.spec``)
extract_workload, Workload, LayerSpec             the compute layers of a torch model
Sparsity, LayerSparsity                           where the zeros are
simulate, Report, LayerReport                     per-layer energy and cycles
ESTIMATORS, Estimator, get_estimator              the estimators (``energysim.estimators``)
build_model, MODEL_NAMES                          the built-in model zoo
"""

from .estimators import ESTIMATORS, Estimator, get_estimator
from .report import LayerReport, Report
from .simulate import simulate
from .sparsity import LayerSparsity, Sparsity
from .spec import Profile, SpecError, dump_profile, load_profile, parse_overrides, shipped_profile_names
from .workload import LayerSpec, UnmodelledLayerWarning, Workload, extract_workload
from .zoo import MODEL_NAMES, build_model

__all__ = [
    "ESTIMATORS",
    "MODEL_NAMES",
    "Estimator",
    "LayerReport",
    "LayerSparsity",
    "LayerSpec",
    "Profile",
    "Report",
    "SpecError",
    "Sparsity",
    "UnmodelledLayerWarning",
    "Workload",
    "build_model",
    "dump_profile",
    "extract_workload",
    "get_estimator",
    "load_profile",
    "parse_overrides",
    "shipped_profile_names",
    "simulate",
]
