"""Evaluate a checkpoint (mmdet or mmseg config, chosen by default_scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--out FILE_OR_DIR]
                                           [--show-dir DIR] [--cfg-options k=v ...]

Besides mmengine's own logs, the work dir receives what the leaderboard collects:
``metrics.json`` (metrics, config, checkpoint, date, world size), ``config.py`` (the
resolved config) and ``env.json`` (versions and devices), each written atomically.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import sys

from _common import default_work_dir, load_config, log_notes, setup_device
from _preflight import PreflightError, preflight


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Evaluate a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs and metrics')
    parser.add_argument('--out', help='det: dump raw results to this .pkl; '
                                      'seg: save predicted masks into this directory')
    parser.add_argument('--show-dir', help='save painted predictions under this directory')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (multi-scale + flip) from the config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def write_json_atomic(path, obj):
    from leaderboard import write_atomic  # temp file + rename: never a half-written file
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def _plain(value):
    """numpy / torch scalars to float so the JSON is plain."""
    return float(value) if hasattr(value, '__float__') and not isinstance(value, str) else value


def run_description(cfg):
    """What the leaderboard needs to place a run: backbone, data, schedule."""
    from make_toy_data import TOY_MARKER
    backbone = cfg.model.get('module', cfg.model).get('backbone', {})
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    data_root = dataset.get('data_root', '')
    train_cfg = cfg.get('train_cfg') or {}
    schedule = (f"{train_cfg['max_epochs']}e" if 'max_epochs' in train_cfg else
                f"{train_cfg['max_iters']}i" if 'max_iters' in train_cfg else '')
    return dict(backbone=dict(type=backbone.get('type'), arch=backbone.get('arch'),
                              model_name=backbone.get('model_name')),
                dataset=dataset.get('type'), data_root=data_root, schedule=schedule,
                toy=osp.isfile(osp.join(data_root, TOY_MARKER)))


def apply_tta(cfg):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise SystemExit('error: --tta needs tta_model and tta_pipeline in the config')
    from mmengine.config import ConfigDict
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    dataset.pipeline = cfg.tta_pipeline


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    cfg.load_from = args.checkpoint
    scope = cfg.default_scope
    if args.tta:
        apply_tta(cfg)
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise SystemExit('error: --show-dir needs default_hooks.visualization in the config')
        hook.draw = True
        if scope == 'mmdet':
            hook.test_out_dir = osp.abspath(args.show_dir)
        else:
            cfg.visualizer.save_dir = osp.abspath(args.show_dir)
    if args.out and scope == 'mmseg':
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)

    if os.environ.get('LOCAL_RANK', '0') == '0':  # see tools/train.py
        try:  # the backbone's ImageNet checkpoint is not needed to test a trained model
            preflight(cfg, ('test',), checkpoint=args.checkpoint, pretrained=False)
        except PreflightError as err:
            sys.exit(f'error: {args.checkpoint} cannot be tested with {args.config}:\n{err}')

    notes = setup_device(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    log_notes(notes)
    if args.out and scope == 'mmdet':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('error: --out must be a .pkl file for detection')
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()

    if runner.rank == 0:
        from collect_env import collect_env
        os.makedirs(cfg.work_dir, exist_ok=True)
        cfg.dump(osp.join(cfg.work_dir, 'config.py'))
        write_json_atomic(osp.join(cfg.work_dir, 'env.json'), collect_env())
        write_json_atomic(osp.join(cfg.work_dir, 'metrics.json'), dict(
            metrics={k: _plain(v) for k, v in metrics.items()},
            config=osp.abspath(args.config), checkpoint=osp.abspath(args.checkpoint),
            task=scope, tta=args.tta, world_size=runner.world_size,
            date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            **run_description(cfg)))


if __name__ == '__main__':
    main()
