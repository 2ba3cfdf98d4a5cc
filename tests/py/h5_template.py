"""Writes a small HDF5 "template" with h5py: root attributes naming it and
holding its parameters, a group with an attribute, a small dataset and one
too large to become text. Prints the file's path and the small dataset's
values as JSON.

Usage: h5_template.py DIR
"""
import json
import sys

import h5py
import numpy as np

path = sys.argv[1] + "/heat.h5"
x = np.linspace(0.0, 1.0, 64)
with h5py.File(path, "w") as f:
    f.attrs["template_id"] = "heat-1d"
    f.attrs["template_type"] = "Simulation"
    f.attrs["alpha"] = 0.25
    f.attrs["steps"] = 100
    g = f.create_group("grid")
    g.attrs["units"] = "m"
    g.create_dataset("x", data=x)
    f.create_dataset(
        "initial", data=np.sin(np.linspace(0.0, 3.0, 65536)), chunks=(4096,), compression="gzip"
    )
print(json.dumps({"path": path, "x": x.tolist()}))
