"""M — models: linear, user-function and ODE models, discretisation, and example plants."""

from . import library
from .base import AbstractModel, ModelWrapper, Trajectory
from .function import FunctionModel
from .linear import LinearModel, van_loan_noise, zoh_discretize
from .operating_point import SteadyState, jacobian_transform, linearize, steady_state
from .ode import RK4, ODEModel

__all__ = [
    "AbstractModel",
    "FunctionModel",
    "LinearModel",
    "ModelWrapper",
    "ODEModel",
    "RK4",
    "SteadyState",
    "Trajectory",
    "jacobian_transform",
    "library",
    "linearize",
    "steady_state",
    "van_loan_noise",
    "zoh_discretize",
]
