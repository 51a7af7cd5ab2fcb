"""Loading weights: weights_only, unwrapped, strict about keys, and finite.

The official VMamba plugin catches load failures with a ``print`` and trains from random
init; mmengine's ``PretrainedInit`` only warns about missing keys. Both hide a wrong
checkpoint until a table row comes out a few points low. Here a missing, unexpected or
mis-shaped backbone key is an error that names the keys, and so is a NaN/inf weight (a
diverged run's checkpoint). :func:`check_fits_model` applies the same rules to the
checkpoint ``tools/test.py`` evaluates or ``--resume`` continues, as mmengine will load it.
"""
import os
import os.path as osp
import pickle
import zipfile
from collections import OrderedDict

import torch

WRAPPER_KEYS = ('state_dict', 'model', 'model_ema', 'module')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used as asked (unsafe, wrong architecture, wrong size)."""


def load_checkpoint_file(path, map_location='cpu'):
    """Load a checkpoint from a local path or http(s) URL with ``weights_only=True``.

    Pickled code (any global outside torch's allow-list and the mmengine additions made in
    :mod:`backbones.engine.runtime`) is refused with :class:`CheckpointError`.
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


def state_dict_mismatch(own, state_dict, allow_missing=(), ignore_missing=()):
    """``(missing, unexpected, mis_shaped)`` key lists between a module's own state dict
    ``own`` and ``state_dict``. Missing keys starting with ``allow_missing`` or containing one
    of ``ignore_missing`` are not counted."""
    missing = [k for k in own if k not in state_dict and not k.startswith(tuple(allow_missing))
               and not any(part in k for part in ignore_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [f'{k} (checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)})'
                  for k, v in state_dict.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    return missing, unexpected, mis_shaped


def describe_mismatch(mismatch, source, target):
    """The text naming what ``state_dict_mismatch`` found (empty string when it fits)."""
    missing, unexpected, mis_shaped = mismatch
    if not (missing or unexpected or mis_shaped):
        return ''
    parts = [f'{source} does not match {target}:']
    if missing:
        parts.append(f'  missing keys ({len(missing)}): {_summarise(missing)}')
    if unexpected:
        parts.append(f'  unexpected keys ({len(unexpected)}): {_summarise(unexpected)}')
    if mis_shaped:
        parts.append(f'  shape mismatches ({len(mis_shaped)}): {_summarise(mis_shaped)}')
    parts.append('  (is it the checkpoint of another model or size?)')
    return '\n'.join(parts)


def non_finite_tensors(state_dict):
    """``[(key, number of NaN/inf values)]`` of the floating-point tensors of a state dict."""
    bad = []
    for key, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point():
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad.append((key, count))
    return bad


def check_finite(state_dict, source='checkpoint'):
    """Refuse a state dict holding NaN or inf (a diverged run's weights): loading it gives
    NaN losses, or, at test time, all-zero metrics that look like a result."""
    bad = non_finite_tensors(state_dict)
    if bad:
        total = sum(state_dict[k].numel() for k, _ in bad)
        raise CheckpointError(
            f'{source} holds non-finite weights: {len(bad)} tensors with NaN/inf values '
            f'({sum(n for _, n in bad)} of their {total} values), e.g. '
            f'{_summarise([f"{k} ({n})" for k, n in bad], limit=5)}. It comes from a run '
            f'that diverged; use an earlier checkpoint.')


def load_state_dict_strict(module, state_dict, allow_missing=(), source='checkpoint'):
    """Copy ``state_dict`` into ``module``, refusing any key or shape mismatch and any
    NaN/inf value.

    ``allow_missing`` lists key prefixes the module adds on top of the pretrained model
    (e.g. the per-stage output norms of a dense backbone); they keep their init.
    """
    text = describe_mismatch(state_dict_mismatch(module.state_dict(), state_dict,
                                                 allow_missing), source, type(module).__name__)
    if text:
        raise CheckpointError(text)
    check_finite(state_dict, source)
    module.load_state_dict(state_dict, strict=False)
    return module


def mmengine_state_dict(ckpt):
    """The weights mmengine's ``Runner.load_checkpoint`` / ``resume`` copy into the model:
    ``ckpt['state_dict']`` if present, else the whole dict, with ``module.`` stripped.
    (Not :func:`unwrap_state_dict`: mmengine does not look under ``model``; a checkpoint
    that only holds weights there loads nothing into the model.)"""
    sd = ckpt['state_dict'] if isinstance(ckpt, dict) and 'state_dict' in ckpt else ckpt
    if not isinstance(sd, dict):
        raise CheckpointError(f'checkpoint holds a {type(sd).__name__}, not a state_dict')
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in sd.items())


def check_fits_model(model, path, allow_partial=False):
    """Refuse the checkpoint ``path`` unless its weights fit ``model`` exactly (as mmengine
    will load them) and are finite; raises :class:`CheckpointError` naming the keys.

    ``allow_partial``: a key mismatch is returned as text instead (NaN/inf still raise).
    Read with ``weights_only`` and memory-mapped, so only the weights are paged in.
    """
    try:
        ckpt = torch.load(os.fspath(path), map_location='cpu', weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, OSError) as err:
        raise CheckpointError(f'{path} cannot be read: {err}') from None
    state_dict = mmengine_state_dict(ckpt)
    target = getattr(model, 'module', None)  # TTA models: mmengine loads the inner model
    target = target if isinstance(target, torch.nn.Module) else model
    # mmengine ignores missing BatchNorm counters when it loads a checkpoint
    text = describe_mismatch(state_dict_mismatch(target.state_dict(), state_dict,
                                                 ignore_missing=('num_batches_tracked',)),
                             f'checkpoint {path}', f'the config\'s model '
                             f'({type(target).__name__})')
    if text and not allow_partial:
        raise CheckpointError(text)
    check_finite(state_dict, f'checkpoint {path}')
    return text


def check_checkpoint_file(path):
    """Refuse, without unpickling anything, a checkpoint that is truncated or that names
    globals outside the weights_only allow-list (i.e. could run code when loaded)."""
    path = os.fspath(path)
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path}')
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f'{path} is not a complete torch checkpoint (truncated by a crash during '
            f'writing, or not saved with torch.save); use an earlier checkpoint')
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # a zip that is not a torch archive
        raise CheckpointError(f'{path} is not a readable torch checkpoint: {err}') from None
    if unsafe:  # outside torch's allow-list plus ours (backbones.engine.runtime)
        raise CheckpointError(
            f'refusing to load {path}: it contains pickled objects that are not plain '
            f'tensors/containers ({", ".join(sorted(unsafe)[:5])}), so loading it could run '
            f'arbitrary code. If you trust the file, re-save its tensors as a plain '
            f'state_dict.')
