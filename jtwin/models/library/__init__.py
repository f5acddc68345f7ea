"""Example plants, one per application domain of the spec (energy, manufacturing, logistics, assimilation)."""

from .building import BuildingRC, building_model
from .cstr import CSTRDynamics, cstr_model
from .inventory import inventory_model
from .lorenz96 import Lorenz96, lorenz96_model
from .weather import Weather, load_tmy3_greensboro

__all__ = [
    "BuildingRC",
    "CSTRDynamics",
    "Lorenz96",
    "Weather",
    "building_model",
    "cstr_model",
    "inventory_model",
    "load_tmy3_greensboro",
    "lorenz96_model",
]
