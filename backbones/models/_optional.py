"""Families that need a part of the mm stack a bare GPU machine lacks (imported first by
``backbones/models/__init__.py``, for this side effect).

A bare machine (torch, triton and timm, nothing compiled, no network) must still build the
backbones whose code needs nothing else. A family module that needs a missing package of
:data:`STACK` at import (mmengine pulls in ``rich``; mmcv, ``cv2``) is replaced by an empty
module, and one line says which families were left out and why. Any other import error, or
a package that is present but broken, still raises.
"""
import importlib
import logging
import os.path as osp
import re
import sys
import types

#: Packages of the training stack that a bare machine may lack.
STACK = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'rich', 'cv2')

__all__ = ['STACK', 'leave_out_families_needing_missing_stack', 'left_out']

#: ``module name -> missing package`` of the families left out in this process.
left_out = {}


def leave_out_families_needing_missing_stack(package, init_file):
    """Import every ``from .X import *`` family of ``init_file``; one that fails because a
    package of :data:`STACK` is not installed becomes an empty module."""
    with open(init_file) as f:
        names = re.findall(r'^from \.(\w+) import \*', f.read(), re.M)
    for name in names:
        full = f'{package}.{name}'
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as err:
            if err.name not in STACK:  # a package present but broken still raises
                raise
            module = types.ModuleType(full, f'left out: needs {err.name}, not installed')
            module.__all__ = []
            sys.modules[full] = module
            left_out[full] = err.name
    if left_out:
        logging.getLogger('backbones').warning(
            'backbones.models: left out %s (not installed: %s)', ', '.join(
                n.rsplit('.', 1)[1] for n in left_out), ', '.join(sorted(set(left_out.values()))))


leave_out_families_needing_missing_stack(__package__, osp.join(osp.dirname(__file__),
                                                               '__init__.py'))
