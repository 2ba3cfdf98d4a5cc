"""Writes heat.h5, a small HDF5 "template" for the README's example: root
attributes name it (template_id, template_type) and hold its parameters,
a group carries units, and two datasets hold the deep data.

Usage: python3 examples/formats/heat.py OUT.h5
"""
import sys

import h5py
import numpy as np

with h5py.File(sys.argv[1], "w") as f:
    f.attrs["template_id"] = "heat-1d"
    f.attrs["template_type"] = "Simulation"
    f.attrs["alpha"] = 0.25
    f.attrs["steps"] = 100
    g = f.create_group("grid")
    g.attrs["units"] = "m"
    g.create_dataset("x", data=np.linspace(0.0, 1.0, 64))
    f.create_dataset(
        "initial", data=np.sin(np.linspace(0.0, 3.0, 65536)), chunks=(4096,), compression="gzip", shuffle=True
    )
