"""Train a detector or segmentor from a config (mmdet or mmseg, chosen by default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options k=v ...] [--launcher pytorch]
                                 [--no-data-check | --full-data-check] [--allow CHECK ...]

Before anything is written, the config, model, checkpoints and data are checked and every
problem found is listed (backbones/preflight); ``--allow CHECK`` lets one check with a
legitimate exception through, keeping the others. The work dir is locked for the run's
lifetime: a second run in it is refused, naming the first (backbones/engine/lock.py).
SIGTERM or Ctrl-C stops after the current iteration and prints the command that resumes
the run.

Multi-GPU / multi-node: tools/dist_train.sh, tools/slurm_train.sh. On a machine without
CUDA the same command runs on CPU: FP16 is replaced by fp32, DDP uses gloo (see
backbones/engine/runtime.py); the config files are never edited.
"""
import argparse

from backbones.engine.train import train


def parse_args(argv=None):
    from backbones.engine.launch import add_allow_argument, cfg_options_action
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
    parser.add_argument('--cfg-options', nargs='+', action=cfg_options_action(),
                        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    add_allow_argument(parser)
    parser.add_argument('--no-data-check', action='store_true',
                        help='skip the dataset checks done before training (annotation '
                             'files, images, label maps); the config, model and '
                             'checkpoints are still checked')
    parser.add_argument('--full-data-check', action='store_true',
                        help='decode every image before training (default: header and end '
                             'of each file only)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    train(parse_args(argv))


if __name__ == '__main__':
    main()
