"""The architectures: one file per family, each registered for mmdet and mmseg on import.

``base.py`` holds :class:`DenseBackbone`, the behaviour they share; ``registry.py`` the
decorator that registers them. Shared layers live in :mod:`backbones.layers`, operators
(selective scan, scan routes) in :mod:`backbones.ops`.
"""
from .base import DenseBackbone
from .cswin import *  # noqa: F401,F403
from .efficientvmamba import *  # noqa: F401,F403
from .focal_transformer import *  # noqa: F401,F403
from .hornet import *  # noqa: F401,F403
from .internimage import *  # noqa: F401,F403
from .localvmamba import *  # noqa: F401,F403
from .mambaout import *  # noqa: F401,F403
from .plainmamba import *  # noqa: F401,F403
from .sgformer import *  # noqa: F401,F403
from .timm_backbone import *  # noqa: F401,F403
from .transnext import *  # noqa: F401,F403
from .uniformer import *  # noqa: F401,F403
from .vit_adapter import *  # noqa: F401,F403
from .vmamba import *  # noqa: F401,F403


def backbone_classes():
    """``{name: class}`` of every backbone this package defines (a DenseBackbone subclass
    exported by a family module)."""
    found = {}
    for value in globals().values():
        if isinstance(value, type) and issubclass(value, DenseBackbone) \
                and value is not DenseBackbone:
            found[value.__name__] = value
    return found


def backbone_class(name):
    """The backbone class called ``name``; a clear error listing the valid names otherwise."""
    classes = backbone_classes()
    if name not in classes:
        raise ValueError(f'unknown backbone {name!r}; available: '
                         f'{", ".join(sorted(classes)) or "(none)"}')
    return classes[name]
