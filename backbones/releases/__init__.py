"""Released detectors and segmentors, re-evaluated through the suite's own models.

``results/releases.csv`` (read by :func:`backbones.metadata.load_releases`) lists, per row of
Tables 2 / 3, the checkpoint its authors released, its key layout and the suite config that
evaluates it. :mod:`.layouts` holds one converter per key layout, :mod:`.convert` the strict
full-model conversion, :mod:`.download` fetching and checksums, :mod:`.toy` the toy-data
check; ``tools/reproduce.py release`` (:mod:`backbones.results.reproduce`) runs them.
"""
from .convert import convert_release, convert_release_file, sha256_file
from .layouts import LAYOUTS, Layout, detect_layouts, get_layout, register_layout

__all__ = ['convert_release', 'convert_release_file', 'sha256_file', 'LAYOUTS', 'Layout',
           'detect_layouts', 'get_layout', 'register_layout']
