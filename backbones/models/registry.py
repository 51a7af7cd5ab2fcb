"""Register backbones into whichever of mmdet / mmseg is installed.

A backbone class is decorated once with :func:`register_backbone` and becomes buildable
from both ``mmdet`` and ``mmseg`` configs (``backbone=dict(type='MambaOut', ...)``).
Either library may be absent; a library that is present but broken (e.g. an mmcv that
does not match) raises, because registering into half the stack silently is worse.
"""
import importlib

SCOPES = ('mmdet', 'mmseg')


def _registry_of(scope, kind='MODELS'):
    try:
        return getattr(importlib.import_module(f'{scope}.registry'), kind)
    except ModuleNotFoundError as err:
        if err.name in (scope, f'{scope}.registry'):
            return None  # library not installed: nothing to register into
        raise


def available_scopes():
    """Names of the downstream libraries (mmdet, mmseg) that can be imported."""
    return tuple(scope for scope in SCOPES if _registry_of(scope) is not None)


def _register(cls, kind):
    for scope in SCOPES:
        registry = _registry_of(scope, kind)
        if registry is not None and registry.get(cls.__name__) is not cls:
            registry.register_module(module=cls)
    return cls


def register_backbone(cls):
    """Class decorator: register ``cls`` in the MODELS registry of mmdet and/or mmseg."""
    return _register(cls, 'MODELS')


def register_optim_constructor(cls):
    """Class decorator: register ``cls`` in the OPTIM_WRAPPER_CONSTRUCTORS of mmdet and/or
    mmseg (a family's own lr rule, e.g. :mod:`backbones.models.lr_decay`)."""
    return _register(cls, 'OPTIM_WRAPPER_CONSTRUCTORS')
