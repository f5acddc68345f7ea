"""M — models: linear, user-function and ODE models, discretisation, and example plants."""

from . import library
from .base import AbstractModel, ModelWrapper, Trajectory
from .function import FunctionModel
from .linear import LinearModel, van_loan_noise, zoh_discretize
from .ode import RK4, ODEModel

__all__ = [
    "AbstractModel",
    "FunctionModel",
    "LinearModel",
    "ModelWrapper",
    "ODEModel",
    "RK4",
    "Trajectory",
    "library",
    "van_loan_noise",
    "zoh_discretize",
]
