"""Writes an HDF5 file with h5py whose datasets exercise every path of
`aslctl h5 cat` (big-endian, deflate + shuffle + fletcher32, unwritten
chunks with a fill value, partial edge chunks, booleans, compact, scalar)
and prints, as JSON, what numpy reads for each selection: the oracle
tests/hdf5.rs checks `h5 cat --raw` against (little-endian, C order).

Usage: h5_slices.py DIR
"""
import json
import sys

import h5py
import numpy as np

path = sys.argv[1] + "/slices.h5"
with h5py.File(path, "w") as f:
    f.create_dataset(
        "be_filtered",
        data=(np.arange(50 * 70).reshape(50, 70) * 7 - 1000).astype(">i4"),
        dtype=">i4",
        chunks=(8, 16),
        compression="gzip",
        shuffle=True,
        fletcher32=True,
    )
    sparse = f.create_dataset("sparse", shape=(40, 40), dtype="<f4", chunks=(10, 10), fillvalue=-1.5)
    sparse[12:18, 3:7] = np.arange(24, dtype="<f4").reshape(6, 4) / 4
    f.create_dataset("cube", data=np.random.default_rng(7).random((9, 11, 13)), chunks=(4, 5, 6))
    f.create_dataset("flags", data=np.arange(30) % 3 == 0, chunks=(7,))
    f.create_dataset("contig", data=np.arange(200, dtype="<u2").reshape(10, 20))
    f.create_dataset("scalar", data=np.float64(2.75))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple((4, 5))
    dsid = h5py.h5d.create(f.id, b"compact", h5py.h5t.STD_I16BE, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(20, dtype=">i2").reshape(4, 5) - 10)

cases = [
    ("be_filtered", ""),
    ("be_filtered", "3:5,17:20"),
    ("be_filtered", "-1,::9"),
    ("be_filtered", "0:8,0:16"),
    ("sparse", ""),
    ("sparse", "10:20,0:10"),
    ("sparse", "30:,30:"),
    ("cube", "1:8:3,::2,-6:"),
    ("cube", "4"),
    ("flags", "5:25:2"),
    ("contig", "2:4,5:9"),
    ("contig", "-1"),
    ("scalar", ""),
    ("compact", "1:3,::2"),
    ("compact", ""),
]
out = []
with h5py.File(path, "r") as f:
    assert f["be_filtered"].dtype.str == ">i4", f["be_filtered"].dtype.str
    for name, sel in cases:
        d = f[name]
        a = d[()] if sel == "" else d[eval("np.s_[" + sel + "]")]
        a = np.asarray(a)
        a = a.astype(a.dtype.newbyteorder("<")) if a.dtype.itemsize > 1 else a
        out.append({"dataset": "/" + name, "slice": sel, "shape": list(a.shape), "hex": a.tobytes().hex()})
print(json.dumps({"path": path, "cases": out}))
