"""A released detector / segmentor checkpoint -> the suite model's keys, strictly.

:func:`convert_release` splits the checkpoint into ``backbone.*`` and the rest, hands the
backbone to its :class:`~.layouts.Layout` and then to the suite backbone's own
``convert_pretrained`` (the same code that loads ImageNet weights), keeps neck / head keys as
they are, and refuses the result unless it fits the model exactly:

* the backbone carries the layout's signature (else: which layout it looks like);
* every release key is used, except the ones the layout declares dropped (with why); which
  key became which is traced through the converters by tensor storage, since renames and
  reshapes keep it;
* no key of the model is missing, none is unexpected, every shape is equal, every value is
  finite.

:func:`convert_release_file` does the same from a file and writes the result atomically as
an mmengine checkpoint that ``tools/test.py`` evaluates like any other.
"""
import hashlib
import os.path as osp
import re

import torch

from ..engine.checkpoint import (
    CheckpointError,
    check_finite,
    describe_mismatch,
    load_checkpoint_file,
    state_dict_mismatch,
    unwrap_state_dict,
)
from ..engine.fileio import write_file_atomic
from .layouts import LAYOUTS, detect_layouts, get_layout

__all__ = ['convert_release', 'convert_release_file', 'sha256_file']


def sha256_file(path, chunk=1 << 22):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def _storage_key(value):
    return (value.device.type, value.data_ptr()) if value.numel() else None


def _check_signature(layout, backbone, source):
    if layout.matches(backbone):
        return
    seen = [n for n in detect_layouts(backbone) if n != layout.name]
    absent = [s for s in layout.signature if not any(re.fullmatch(s, k) for k in backbone)]
    raise CheckpointError(
        f'{source} is not in the {layout.name} layout ({layout.codebase}): it has no backbone '
        f'key matching {", ".join(absent)}. '
        + (f'Its keys are those of the {" / ".join(seen)} layout '
           f'({LAYOUTS[seen[0]].codebase}): a checkpoint of another release or family.'
           if seen else 'Its keys match no known release layout; first backbone keys: '
           f'{", ".join(sorted(backbone)[:5])}.'))


def convert_release(state_dict, model, layout, source='checkpoint'):
    """``state_dict`` of a released detector / segmentor (``backbone.*`` + heads) in
    ``layout`` -> ``(state dict in model's keys, dropped release keys with why)``; raises
    :class:`CheckpointError` naming the keys when it does not fit ``model`` exactly."""
    layout = get_layout(layout) if isinstance(layout, str) else layout
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    heads = {k: v for k, v in state_dict.items() if not k.startswith('backbone.')}
    if not backbone:
        raise CheckpointError(
            f'{source} has no backbone.* keys: not a detector / segmentor checkpoint (an '
            f'ImageNet backbone file belongs in the config\'s init_cfg, not here); first keys: '
            f'{", ".join(sorted(state_dict)[:5])}')
    _check_signature(layout, backbone, source)
    to_convert, own = layout.split(backbone)
    origin = {}
    for key, (src, value) in to_convert.items():
        origin.setdefault(_storage_key(value), src)
    converted = model.backbone.convert_pretrained({k: v for k, (_, v) in to_convert.items()})
    out, used = {}, set()
    for key, value in converted.items():
        out['backbone.' + key] = value
        src = origin.get(_storage_key(value)) if torch.is_tensor(value) else None
        if src is not None:
            used.add(src)
    for key, (src, value) in own.items():
        out['backbone.' + key] = value
        used.add(src)
    unused = [k for k in backbone if k not in used]
    dropped = {k: layout.why_dropped(k) for k in unused}
    unexplained = sorted(k for k, why in dropped.items() if why is None)
    if unexplained:
        raise CheckpointError(
            f'{source}: {len(unexplained)} backbone keys of the {layout.name} layout are used by '
            f'no weight of the model: {", ".join(unexplained[:12])}'
            + (f', ... ({len(unexplained) - 12} more)' if len(unexplained) > 12 else '')
            + ' (a model of another size, or keys the converter does not know)')
    out.update(heads)
    text = describe_mismatch(
        state_dict_mismatch(model.state_dict(), out, ignore_missing=('num_batches_tracked',)),
        f'{source} (layout {layout.name}, converted)', f'the model ({type(model).__name__})')
    if text:
        raise CheckpointError(text)
    check_finite(out, source)
    return out, dropped


def convert_release_file(src, config, layout, dst, cfg_options=None, provenance=None):
    """Convert the release file ``src`` for ``config`` and write ``dst`` atomically as
    ``{'meta': {'release': provenance, ...}, 'state_dict': ...}``; returns the dropped keys.
    Nothing is written when it does not fit."""
    from ..engine.launch import build_model
    _, model = build_model(config, cfg_options)
    state_dict = unwrap_state_dict(load_checkpoint_file(src))
    out, dropped = convert_release(state_dict, model, layout, source=src)
    meta = dict(release=dict(provenance or {}, layout=layout, source_file=osp.basename(src),
                             dropped=sorted(dropped), config=osp.basename(config)))
    write_file_atomic(lambda f: torch.save({'meta': meta, 'state_dict': out}, f), dst)
    return dropped
