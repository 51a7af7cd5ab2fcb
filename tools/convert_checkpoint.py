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
import sys

from backbones.engine.checkpoint import CheckpointError
from backbones.engine.convert import convert_checkpoint


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


def _build_args(pairs):
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise SystemExit(f'error: --arg expects KEY=VALUE, got {pair!r}')
        kwargs[key] = _literal(value)
    return kwargs


def main(argv=None):
    args = parse_args(argv)
    try:
        num, params = convert_checkpoint(args.src, args.dst, args.backbone, args.arch,
                              prefix=args.prefix, extra_args=_build_args(args.arg))
    except (CheckpointError, FileNotFoundError, ValueError) as err:  # nothing written
        sys.exit(f'error: {err}\nnothing written to {args.dst}')
    print(f'{args.backbone}(arch={args.arch!r}): {num} tensors, {params / 1e6:.2f}M params '
          f'converted from {args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
