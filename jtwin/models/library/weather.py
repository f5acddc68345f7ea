"""Real weather for the building plant: a typical meteorological year (TMY3, Greensboro NC), hourly."""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

import numpy as np


class Weather(NamedTuple):
    """Hourly weather: ``hour`` [8760] since Jan 1 00:00, outdoor dry-bulb ``t_out`` [°C], ``ghi`` [W/m²]."""

    hour: np.ndarray
    t_out: np.ndarray
    ghi: np.ndarray

    def disturbances(self, start_hour: int, steps: int, dt_hours: float = 1.0) -> np.ndarray:
        """Disturbance sequence ``[steps, 2]`` = (t_out °C, ghi kW/m²) sampled every ``dt_hours``, wrapping the year.

        Values between hourly records are linearly interpolated.
        """
        t = start_hour + dt_hours * np.arange(steps)
        period = float(len(self.hour))
        t_out = np.interp(t, self.hour, self.t_out, period=period)
        ghi = np.interp(t, self.hour, self.ghi, period=period)
        return np.stack([t_out, ghi / 1000.0], axis=1)


def load_tmy3_greensboro() -> Weather:
    """The packaged TMY3 year for Greensboro NC (NREL station 723170, public domain; via pvlib's sample data)."""
    src = resources.files("jtwin.models.library") / "data" / "weather_greensboro_tmy3.csv"
    data = np.loadtxt(src.open("r"), delimiter=",", comments="#", skiprows=4)
    return Weather(hour=data[:, 0], t_out=data[:, 1], ghi=data[:, 2])
