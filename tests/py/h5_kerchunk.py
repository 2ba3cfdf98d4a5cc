"""Prints kerchunk's references for an HDF5 file as JSON: every chunk key
("dataset/i.j") that kerchunk points into the file, with its byte offset
and size. An oracle independent of h5py's low-level API and of ASL.

Usage: h5_kerchunk.py FILE
"""
import json
import sys

from kerchunk.hdf import SingleHdf5ToZarr

refs = SingleHdf5ToZarr(sys.argv[1], inline_threshold=0).translate()["refs"]
out = {}
for key, ref in refs.items():
    # Metadata (.zarray, .zattrs, .zgroup) and inlined data are strings;
    # references into the file are [url, offset, size].
    if isinstance(ref, list) and len(ref) == 3:
        out["/" + key] = {"offset": ref[1], "size": ref[2]}
print(json.dumps(out))
