"""Bring a result measured elsewhere into the leaderboard, validated (the one way in).

    python tools/import_run.py CONFIG --out results/runs/NAME --origin TEXT
        (--checkpoint CKPT | --checkpoint-sha256 HEX)
        (--metrics FILE.json | --metric KEY=VALUE ...) [--units suite|paper] [--tta]
        [--world-size N] [--date ISO] [--cfg-options k=v ...] [--force]

Metrics use mmdet's / mmseg's keys (``coco/bbox_mAP``..., ``mIoU``, ``aAcc``, ``mAcc``), in
their units (AP a fraction of 1, mIoU percent), or ``--units paper`` for AP in percent as
printed in the paper. The record is checked by the same schema the leaderboard applies
(backbones/results/schema.py) before the folder appears; a problem is an error naming it,
and nothing is written.
"""
import argparse
import json
import sys

from backbones.engine.evaluate import apply_tta
from backbones.engine.launch import cfg_options_action, load_config
from backbones.results.importer import import_run
from backbones.results.runs import RunError


def _metric(text):
    key, sep, value = text.partition('=')
    if not sep:
        raise argparse.ArgumentTypeError(f'{text!r}: expected KEY=VALUE')
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # kept as a string: the schema names it


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--out', required=True, help='the run folder to create')
    parser.add_argument('--origin', required=True,
                        help='where the numbers come from (URL, paper and table, log file)')
    parser.add_argument('--checkpoint', help='the weights the numbers belong to (hashed)')
    parser.add_argument('--checkpoint-sha256', help='their sha256, if the file is elsewhere')
    parser.add_argument('--metrics', help='a JSON object of metric key -> value')
    parser.add_argument('--metric', nargs='+', type=_metric, default=[], help='KEY=VALUE')
    parser.add_argument('--units', choices=['suite', 'paper'], default='suite')
    parser.add_argument('--tta', action='store_true', help='multi-scale + flip result')
    parser.add_argument('--world-size', type=int, default=1)
    parser.add_argument('--date', help='when the numbers were measured (ISO 8601)')
    parser.add_argument('--cfg-options', nargs='+', action=cfg_options_action())
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    args = parser.parse_args(argv)
    metrics = {}
    if args.metrics:
        try:
            with open(args.metrics) as f:
                metrics = json.load(f)
        except (OSError, ValueError) as err:
            sys.exit(f'error: --metrics {args.metrics}: {type(err).__name__}: {err}')
        if not isinstance(metrics, dict):
            sys.exit(f'error: --metrics {args.metrics} holds a {type(metrics).__name__}, not '
                     f'an object of metric key -> value')
    metrics.update(dict(args.metric))
    if not metrics:
        sys.exit('error: no metrics: give --metrics FILE.json or --metric KEY=VALUE ...')
    cfg = load_config(args.config, args.cfg_options)
    if args.tta:
        apply_tta(cfg)
    try:
        out = import_run(cfg, args.config, metrics, args.out, args.origin, args.checkpoint,
                         args.checkpoint_sha256, args.tta, args.world_size, args.units,
                         args.date, args.force)
    except RunError as err:
        sys.exit(f'error: {args.config}: the record cannot be imported: {err}')
    print(f'imported {out} (source "imported"); python tools/leaderboard.py collects it')


if __name__ == '__main__':
    main()
