"""Loading pretrained weights: weights_only, unwrapped, and strict about keys.

The official VMamba plugin catches load failures with a ``print`` and trains from random
init; mmengine's ``PretrainedInit`` only warns about missing keys. Both hide a wrong
checkpoint until a table row comes out a few points low. Here a missing, unexpected or
mis-shaped backbone key is an error that names the keys.
"""
import os
import os.path as osp
import pickle
import tempfile
import zipfile
from collections import OrderedDict

import torch
from mmengine.fileio import LocalBackend, register_backend

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


def write_file_atomic(data, path):
    """Write ``data`` (bytes or str) so that ``path`` is either the old file or the whole
    new one, whatever kills the process and when: temp file beside it, fsync, rename."""
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb' if isinstance(data, (bytes, bytearray, memoryview)) else 'w') \
                as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:  # make the rename itself survive a power cut
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put``: a checkpoint written by
    ``CheckpointHook`` appears under its name only once complete. Select it with
    ``default_hooks.checkpoint.backend_args=dict(backend='atomic_local')`` (our bases do)."""

    def put(self, obj, filepath):
        write_file_atomic(obj, filepath)

    def put_text(self, obj, filepath, encoding='utf-8'):
        write_file_atomic(obj.encode(encoding), filepath)


register_backend('atomic_local', AtomicLocalBackend, force=True)


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
    if unsafe:  # outside torch's allow-list plus ours (backbones.runtime)
        raise CheckpointError(
            f'refusing to load {path}: it contains pickled objects that are not plain '
            f'tensors/containers ({", ".join(sorted(unsafe)[:5])}), so loading it could run '
            f'arbitrary code. If you trust the file, re-save its tensors as a plain '
            f'state_dict.')
