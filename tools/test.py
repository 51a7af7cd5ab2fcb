"""Evaluate a checkpoint (mmdet or mmseg config, chosen by default_scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--out FILE_OR_DIR]
                                           [--show-dir DIR] [--cfg-options k=v ...]
                                           [--allow-partial] [--allow CHECK ...]

A checkpoint whose weights do not fit the config's model exactly (missing, unexpected or
mis-shaped keys, listed) or are not finite is refused before anything is written;
``--allow-partial`` evaluates the former anyway, but never into ``metrics.json``.

Besides mmengine's own logs, the work dir receives what the leaderboard collects:
``metrics.json`` (metrics, config, checkpoint, date, world size, and flags for a NaN or
all-zero result, which the leaderboard skips), ``config.py`` (the resolved config) and
``env.json`` (versions and devices), each written atomically (backbones/results/runs.py);
the record carries its provenance (config digest, checkpoint sha256) and passes the schema
the leaderboard checks (backbones/results/schema.py). The work dir is locked while it runs.
"""
import argparse

from backbones.engine.evaluate import evaluate


def parse_args(argv=None):
    from backbones.engine.launch import add_allow_argument, cfg_options_action
    parser = argparse.ArgumentParser(description='Evaluate a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs and metrics')
    parser.add_argument('--out', help='det: dump raw results to this .pkl; '
                                      'seg: save predicted masks into this directory')
    parser.add_argument('--show-dir', help='save painted predictions under this directory')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (multi-scale + flip) from the config')
    parser.add_argument('--allow-partial', action='store_true',
                        help='evaluate a checkpoint whose keys do not match the model (they '
                             'are listed); its metrics go to metrics.partial.json, never to '
                             'metrics.json')
    add_allow_argument(parser)
    parser.add_argument('--no-data-check', action='store_true',
                        help='skip the checks of the test set (annotations, images)')
    parser.add_argument('--full-data-check', action='store_true',
                        help='decode every test image first (default: header and end only)')
    parser.add_argument('--cfg-options', nargs='+', action=cfg_options_action(),
                        help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    evaluate(parse_args(argv))


if __name__ == '__main__':
    main()
