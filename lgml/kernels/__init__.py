"""Compiled numba code, arrays in and arrays out, importing nothing else of lgml: prediction
(:mod:`~lgml.kernels.forest`), exact TreeSHAP (:mod:`~lgml.kernels.treeshap`) and the disk cache
of its tables (:mod:`~lgml.kernels.cache`, in a folder the caller passes in)."""
