"""Data: the shipped built-in corpus, datasets (on-the-fly mixing, paired directories) and the test-set builder.

See :mod:`edm_se.data.builtin` (shipped corpus), :mod:`edm_se.data.datasets` (datasets, ``make_test_set``) and
:mod:`edm_se.data.corpus` (the larger ``edm-se data build`` corpus).
"""

from edm_se.data.builtin import builtin_files, builtin_manifest, builtin_root, builtin_test_set, read_manifest
from edm_se.data.datasets import MixingDataset, PairedDataset, make_test_set, resolve_files

__all__ = ["builtin_root", "builtin_manifest", "builtin_files", "builtin_test_set", "read_manifest",
           "MixingDataset", "PairedDataset", "make_test_set", "resolve_files"]
