"""Derive the packaged weather file from pvlib's TMY3 sample (run once; the output is committed).

Source: NREL TMY3 station 723170, Greensboro Piedmont Triad Int'l, NC (public domain, US
government work), as shipped by pvlib (BSD-3) in ``pvlib/data/723170TYA.CSV``.

    pip download --no-deps pvlib && unzip -o pvlib-*.whl 'pvlib/data/723170TYA.CSV'
    python scripts/derive_weather.py pvlib/data/723170TYA.CSV
"""

import csv
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "jtwin/models/library/data/weather_greensboro_tmy3.csv"


def main(src: str) -> None:
    with open(src, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)  # station metadata line
        header = next(reader)
        i_temp, i_ghi = header.index("Dry-bulb (C)"), header.index("GHI (W/m^2)")
        rows = [(float(r[i_temp]), float(r[i_ghi])) for r in reader]
    if len(rows) != 8760:
        raise SystemExit(f"expected 8760 hourly rows, got {len(rows)}")
    with open(OUT, "w", newline="") as fh:
        fh.write("# Hourly typical-meteorological-year weather, Greensboro NC (NREL TMY3 station 723170).\n")
        fh.write("# Public domain (NREL/US DOE), taken from pvlib's data/723170TYA.CSV; derived by scripts/derive_weather.py.\n")
        fh.write("# hour: hours since Jan 1 00:00 (value averaged over the hour ending at hour+1); t_out_C: dry-bulb; ghi_W_m2: global horizontal irradiance\n")
        writer = csv.writer(fh)
        writer.writerow(["hour", "t_out_C", "ghi_W_m2"])
        for k, (t, g) in enumerate(rows):
            writer.writerow([k, f"{t:g}", f"{g:g}"])


if __name__ == "__main__":
    main(sys.argv[1])
