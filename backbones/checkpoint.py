"""Loading pretrained weights: weights_only, unwrapped, and strict about keys.

The official VMamba plugin catches load failures with a ``print`` and trains from random
init; mmengine's ``PretrainedInit`` only warns about missing keys. Both hide a wrong
checkpoint until a table row comes out a few points low. Here a missing, unexpected or
mis-shaped backbone key is an error that names the keys.
"""
import os
import pickle
from collections import OrderedDict

import torch

WRAPPER_KEYS = ('state_dict', 'model', 'model_ema', 'module')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used as asked (unsafe, wrong architecture, wrong size)."""


def load_checkpoint_file(path, map_location='cpu'):
    """Load a checkpoint from a local path or http(s) URL with ``weights_only=True``.

    Pickled code (any global outside torch's allow-list and the mmengine additions made in
    :mod:`backbones.runtime`) is refused with :class:`CheckpointError`.
    """
    path = str(path)
    try:
        if path.startswith(('http://', 'https://')):
            return torch.hub.load_state_dict_from_url(
                path, map_location=map_location, weights_only=True, progress=True)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint file not found: {path}')
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f'refusing to load {path}: it contains pickled objects that are not plain '
            f'tensors/containers, so loading it could run arbitrary code. If you trust '
            f'the file, re-save its tensors as a plain state_dict. Details: {err}') from None


def unwrap_state_dict(ckpt, prefix=None):
    """Return the flat ``{name: tensor}`` dict inside a checkpoint.

    Accepts a bare state_dict or one nested under ``state_dict`` / ``model`` (mmengine,
    timm, official releases); strips a DDP ``module.`` prefix. With ``prefix`` (e.g.
    ``'backbone.'`` for a full mmdet/mmseg checkpoint) only keys under it are kept.
    """
    sd = ckpt
    while isinstance(sd, dict) and not _is_flat(sd):
        inner = next((sd[k] for k in WRAPPER_KEYS if isinstance(sd.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(
                'checkpoint holds no state_dict: expected tensors at the top level or under '
                f'one of {WRAPPER_KEYS}; top-level keys are {sorted(sd)[:10]}')
        sd = inner
    if not isinstance(sd, dict):
        raise CheckpointError(f'checkpoint is a {type(sd).__name__}, not a state_dict')
    sd = OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in sd.items())
    if prefix:
        sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
        if not sd:
            raise CheckpointError(f'no key of the checkpoint starts with {prefix!r}')
    return sd


def _is_flat(d):
    return len(d) > 0 and all(torch.is_tensor(v) for v in d.values())


def _summarise(keys, limit=20):
    keys = sorted(keys)
    text = ', '.join(keys[:limit])
    return text + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


def load_state_dict_strict(module, state_dict, allow_missing=(), source='checkpoint'):
    """Copy ``state_dict`` into ``module``, refusing any key or shape mismatch.

    ``allow_missing`` lists key prefixes the module adds on top of the pretrained model
    (e.g. the per-stage output norms of a dense backbone); they keep their init.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(tuple(allow_missing))]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [f'{k} (checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)})'
                  for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        parts = [f'{source} does not match {type(module).__name__}:']
        if missing:
            parts.append(f'  missing keys ({len(missing)}): {_summarise(missing)}')
        if unexpected:
            parts.append(f'  unexpected keys ({len(unexpected)}): {_summarise(unexpected)}')
        if mis_shaped:
            parts.append(f'  shape mismatches ({len(mis_shaped)}): {_summarise(mis_shaped)}')
        parts.append('  (is it the checkpoint of another model or size?)')
        raise CheckpointError('\n'.join(parts))
    module.load_state_dict(state_dict, strict=False)
    return module
