"""Convert an ImageNet checkpoint into a backbone's own key layout, verified before writing.

    python tools/convert_checkpoint.py SRC DST --backbone MambaOut --arch tiny
                                       [--prefix backbone.] [--arg KEY=VALUE ...]

SRC (path or URL) is loaded with ``weights_only=True`` and unwrapped (``model`` /
``state_dict`` wrappers, DDP ``module.`` prefix). The backbone class's
``convert_pretrained`` maps it to the class's own keys (dropping the classifier); the
result is strictly loaded into a freshly built backbone of that arch, so a checkpoint of
another model or size fails here, naming the keys, and nothing is written. DST is then
written atomically as ``{'state_dict': converted}``, loadable with
``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

Works for every backbone class of the package that implements ``convert_pretrained``.
"""
import argparse
import ast
import os
import os.path as osp
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)


def _literal(text):
    """A Python literal (dict, tuple, number, bool) if ``text`` is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an ImageNet checkpoint to a backbone of this package')
    parser.add_argument('src', help='source checkpoint (path or http(s) URL)')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--backbone', required=True,
                        help='backbone class name, e.g. MambaOut')
    parser.add_argument('--arch', required=True, type=_literal,
                        help="size name (e.g. tiny) or a dict literal, e.g. "
                             "\"{'depths': (3, 3, 9, 3), 'dims': (48, 96, 192, 288)}\"")
    parser.add_argument('--prefix', default=None,
                        help="keep only keys under this prefix (e.g. 'backbone.' for a "
                             "full detector / segmentor checkpoint)")
    parser.add_argument('--arg', action='append', default=[], metavar='KEY=VALUE',
                        help='extra constructor argument of the backbone (repeatable)')
    return parser.parse_args(argv)


def backbone_class(name):
    import backbones
    from backbones.base import DenseBackbone
    classes = {k: v for k, v in vars(backbones).items()
               if isinstance(v, type) and issubclass(v, DenseBackbone) and v is not DenseBackbone}
    if name not in classes:
        raise SystemExit(f'error: unknown --backbone {name!r}; available: '
                         f'{", ".join(sorted(classes)) or "(none)"}')
    return classes[name]


def build_args(pairs):
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise SystemExit(f'error: --arg expects KEY=VALUE, got {pair!r}')
        kwargs[key] = _literal(value)
    return kwargs


def save_atomic(obj, dst):
    """torch.save to a temp file next to ``dst``, then rename: no half-written DST."""
    import torch
    dst_dir = osp.dirname(osp.abspath(dst))
    os.makedirs(dst_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst_dir, prefix=f'.{osp.basename(dst)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def convert(src, dst, backbone, arch, prefix=None, extra_args=None):
    """Convert ``src`` to ``dst``; return (number of tensors, number of parameters)."""
    import torch

    from backbones.checkpoint import (load_checkpoint_file, load_state_dict_strict,
                                      unwrap_state_dict)
    cls = backbone_class(backbone)
    state_dict = unwrap_state_dict(load_checkpoint_file(src), prefix=prefix)
    converted = dict(cls.convert_pretrained(state_dict))

    model = cls(arch=arch, **(extra_args or {}))
    load_state_dict_strict(model, converted, allow_missing=cls.new_key_prefixes,
                           source=f'{src} (converted)')
    # DST must load through init_cfg, which converts again: that has to be the identity.
    again = cls.convert_pretrained(converted)
    if list(again) != list(converted) or not all(
            again[k] is converted[k] or torch.equal(again[k], converted[k]) for k in again):
        raise RuntimeError(f'{cls.__name__}.convert_pretrained is not the identity on its '
                           f'own output; DST would not load through init_cfg')
    save_atomic({'state_dict': converted}, dst)
    return len(converted), sum(v.numel() for v in converted.values())


def main(argv=None):
    args = parse_args(argv)
    from backbones.checkpoint import CheckpointError
    try:
        num, params = convert(args.src, args.dst, args.backbone, args.arch,
                              prefix=args.prefix, extra_args=build_args(args.arg))
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        sys.exit(f'error: {err}\nnothing written to {args.dst}')
    print(f'{args.backbone}(arch={args.arch!r}): {num} tensors, {params / 1e6:.2f}M params '
          f'converted from {args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
