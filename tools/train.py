"""Train a detector or segmentor from a config (mmdet or mmseg, chosen by default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options k=v ...] [--launcher pytorch]

Multi-GPU / multi-node: tools/dist_train.sh, tools/slurm_train.sh. On a machine without
CUDA the same command runs on CPU: FP16 is replaced by fp32, DDP uses gloo (see
backbones/runtime.py); the config files are never edited.
"""
import argparse
import os
import sys

from _common import default_work_dir, load_config, log_notes, setup_device
from _preflight import PreflightError, find_resume_checkpoint, preflight, remove_partial_writes


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision (fp16) training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the '
                             'work dir when no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--no-data-check', action='store_true',
                        help='skip the dataset checks done before training (annotation '
                             'files, label ranges); the model and checkpoints are still '
                             'checked')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)

    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('error: --auto-scale-lr needs auto_scale_lr.base_batch_size '
                             'in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        ckpt = find_resume_checkpoint(cfg.work_dir)
        if ckpt is None:
            print(f'--resume: no checkpoint in {cfg.work_dir}: starting from scratch')
        cfg.resume, cfg.load_from = ckpt is not None, ckpt
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    # Everything that can be checked before the Runner creates the work dir is checked
    # here, once per node; torchrun stops the other ranks when this one exits.
    if os.environ.get('LOCAL_RANK', '0') == '0':
        try:
            preflight(cfg, ('train', 'val'), checkpoint=cfg.get('load_from'),
                      data=not args.no_data_check)
        except PreflightError as err:
            sys.exit(f'error: {args.config} cannot be trained as configured:\n{err}')
        if cfg.resume and os.environ.get('RANK', '0') == '0':
            remove_partial_writes(cfg.work_dir)

    notes = setup_device(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from backbones.hooks import NonFiniteLossError, TrainingStopped
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    log_notes(notes)
    try:
        runner.train()
    except TrainingStopped as stop:
        runner.logger.warning(str(stop))
        sys.exit(stop.code)
    except NonFiniteLossError as err:
        runner.logger.error(str(err))
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
