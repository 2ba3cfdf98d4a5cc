"""Writes HDF5 files with h5py in several layouts and prints, as JSON, what
h5py's own low-level API says about where each dataset's bytes lie: the
oracle tests/hdf5.rs checks ASL's index against.

Usage: h5_fixtures.py DIR
"""
import json
import sys
import time

import h5py
import numpy as np

out = sys.argv[1]
path = out + "/layouts.h5"
with h5py.File(path, "w") as f:
    d = f.create_dataset("contiguous", data=np.arange(1000, dtype="<i4"))
    d.attrs["units"] = "m"
    d.attrs["scale"] = 2.5
    f.create_dataset("chunked", data=np.arange(4000, dtype="<f8").reshape(40, 100), chunks=(10, 30))
    f.create_dataset(
        "gzip_shuffle",
        data=np.arange(6000, dtype="<i2").reshape(60, 100),
        chunks=(16, 64),
        compression="gzip",
        shuffle=True,
    )
    g = f.create_group("nested/deeper")
    g.create_dataset("small", data=np.arange(7, dtype="u1"))
    # A compact dataset: its data lives in the object header.
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple((16,))
    dsid = h5py.h5d.create(f.id, b"compact", h5py.h5t.STD_U8LE, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(16, dtype="u1"))

oracle = {}
with h5py.File(path, "r") as f:

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        dsid = obj.id
        layout = dsid.get_create_plist().get_layout()
        entry = {"shape": list(obj.shape)}
        if layout == h5py.h5d.CHUNKED:
            entry["layout"] = "chunked"
            entry["chunks"] = []
            for i in range(dsid.get_num_chunks()):
                info = dsid.get_chunk_info(i)
                entry["chunks"].append(
                    {"offset": list(info.chunk_offset), "addr": info.byte_offset, "size": info.size}
                )
        elif layout == h5py.h5d.CONTIGUOUS:
            entry["layout"] = "contiguous"
            entry["addr"] = dsid.get_offset()
            entry["size"] = dsid.get_storage_size()
        else:
            entry["layout"] = "compact"
        oracle["/" + name] = entry

    f.visititems(visit)

# The same data twice more, laid out otherwise: chunked where it was
# contiguous and the reverse, other chunk shapes and compression, written
# at another time; and once with one element changed.

time.sleep(1.1)


def same(p, change=False):
    with h5py.File(p, "w", track_order=False) as f:
        c = np.arange(1000, dtype="<i4")
        if change:
            c[500] = -1
        d = f.create_dataset("contiguous", data=c, chunks=(100,), compression="lzf")
        d.attrs["scale"] = 2.5
        d.attrs["units"] = "m"
        f.create_dataset("chunked", data=np.arange(4000, dtype="<f8").reshape(40, 100))
        f.create_dataset("gzip_shuffle", data=np.arange(6000, dtype="<i2").reshape(60, 100), chunks=(60, 100), compression="gzip", compression_opts=9)
        f.create_group("nested").create_group("deeper").create_dataset("small", data=np.arange(7, dtype="u1"), chunks=(7,))
        f.create_dataset("compact", data=np.arange(16, dtype="u1"))


same(out + "/relaid.h5")
same(out + "/changed.h5", change=True)
print(json.dumps({"path": path, "relaid": out + "/relaid.h5", "changed": out + "/changed.h5", "datasets": oracle}))
