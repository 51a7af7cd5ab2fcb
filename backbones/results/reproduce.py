"""The suite's main job: regenerate Tables 2 and 3 with our numbers beside the paper's.

``tools/reproduce.py`` is the command line (``toy`` | ``full``). ``toy`` does real work on a
CPU: measures Params/MACs of every config at the paper's input sizes (results/complexity.csv),
trains and evaluates the rows marked ``toy`` in results/backbones.csv (a small MambaOut and a
small VMamba, both tasks) on the toy datasets (results/runs/toy-*, labelled "toy"), and
rebuilds results/leaderboard.csv, table2.md, table3.md and ap_vs_macs.png.

``full`` trains every selected config with tools/dist_train.sh on the GPUs of this node
(NNODES / NODE_RANK / MASTER_ADDR for more), evaluates the last checkpoint with
tools/dist_test.sh (and multi-scale + flip for segmentation with --tta) into results/runs/,
then rebuilds the leaderboard. Data: data/coco and data/ade/ADEChallengeData2016 (or
--coco / --ade).

Finished steps are skipped on a second run (complexity rows whose config is unchanged, run
folders with a valid metrics.json); ``--force`` redoes them.
"""
import fnmatch
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

from ..analysis.complexity import CONFIG_DIRS, measure_all
from ..datasets.toy_data import TOY_MARKER, make_toy_data
from ..datasets.toy_options import toy_cfg_options
from ..engine.launch import REPO, find_configs, load_config
from ..metadata import load_rows
from .leaderboard import write_leaderboard
from .runs import RunError, load_run

__all__ = ['run_toy', 'run_full', 'toy_runs']

TOOLS = osp.join(REPO, 'tools')
RESULTS = osp.join(REPO, 'results')


def toy_runs():
    """The configs the toy mode trains: the rows marked ``toy`` in results/backbones.csv,
    detection first."""
    return tuple(row.config_path(task) for task in ('det', 'seg') for row in load_rows()
                 if task in row.toy)

# Scaled-down schedule for the toy runs (ImageNet weights are not available offline, so the
# backbones start from random init): a short warm-up and a larger learning rate.
TOY_SCHEDULE = {
    # 64 images, batch 4: 16 iterations per epoch. MambaOut-Femto reached box AP50 0.58 on the
    # toy val set after 4 epochs (64 iterations) in a calibration run.
    'mmdet': ['train_cfg.max_epochs=4', 'train_cfg.val_interval=4',
              'default_hooks.checkpoint.interval=4', 'param_scheduler.0.end=30',
              'param_scheduler.1.milestones=[3]', 'optim_wrapper.optimizer.lr=0.0006'],
    'mmseg': ['train_cfg.max_iters=64', 'train_cfg.val_interval=64',
              'default_hooks.checkpoint.interval=64', 'param_scheduler.0.end=16',
              'param_scheduler.1.begin=16', 'param_scheduler.1.end=64',
              'optim_wrapper.optimizer.lr=0.0006'],
}
TOY_SCALE = 128


def say(msg):
    print(f'[reproduce {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run_logged(cmd, log_path, echo=('Epoch(train)', 'Iter(train)', 'Epoch(val)', 'Iter(val)')):
    """Run ``cmd``; full output to ``log_path``, progress lines echoed. Raise on failure."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        for line in proc.stdout:
            log.write(line)
            if any(tag in line for tag in echo):
                print('    ' + line.rstrip()[:200], flush=True)
        if proc.wait() != 0:
            raise SystemExit(f'error: {" ".join(cmd[:3])} ... failed (exit {proc.returncode}); '
                             f'see {log_path}')


def has_valid_metrics(folder):
    try:
        load_run(folder)
        return True
    except RunError:
        return False


# ---- steps ------------------------------------------------------------------------------
def step_complexity(results, force):
    measure_all(osp.join(results, 'complexity.csv'), force=force, log=say)


def step_toy_data(root):
    if osp.isfile(osp.join(root, 'coco', TOY_MARKER)) and \
            osp.isfile(osp.join(root, 'ade', 'ADEChallengeData2016', TOY_MARKER)):
        say(f'toy datasets present in {root}')
    else:
        make_toy_data(root)
        say(f'toy datasets written to {root}')
    return {'mmdet': osp.join(root, 'coco'),
            'mmseg': osp.join(root, 'ade', 'ADEChallengeData2016')}


def step_toy_runs(roots, results, force, work_root, only=None):
    from mmengine.config import Config
    runs = toy_runs()
    selected = [r for r in runs if not only or
                any(fnmatch.fnmatch(osp.basename(r), pat) for pat in only)]
    if not selected:
        raise SystemExit(f'error: no toy run matches {only}; toy runs: '
                         f'{[osp.basename(r) for r in runs]}')
    for i, path in enumerate(selected, 1):
        stem = osp.splitext(osp.basename(path))[0]
        run_dir = osp.join(results, 'runs', f'toy-{stem}')
        if has_valid_metrics(run_dir) and not force:
            say(f'toy run {i}/{len(selected)} {stem}: done before ({run_dir})')
            continue
        cfg = Config.fromfile(path)
        opts = toy_cfg_options(cfg, roots[cfg.default_scope], scale=TOY_SCALE,
                               batch_size=4) + TOY_SCHEDULE[cfg.default_scope] + [
            'model.backbone.init_cfg=None', 'randomness.seed=0',
            'default_hooks.logger.interval=10']
        work = osp.join(work_root, f'toy-{stem}')
        if osp.isdir(work):
            shutil.rmtree(work)
        say(f'toy run {i}/{len(selected)} {stem}: training (log {work}/train.log)')
        start = time.time()
        run_logged([sys.executable, osp.join(TOOLS, 'train.py'), path, '--work-dir', work,
                    '--cfg-options', *opts], osp.join(work, 'train.log'))
        ckpt = open(osp.join(work, 'last_checkpoint')).read().strip()
        say(f'toy run {i}/{len(selected)} {stem}: evaluating {osp.basename(ckpt)}')
        tmp_dir = run_dir + '.partial'
        if osp.isdir(tmp_dir):
            shutil.rmtree(tmp_dir)
        run_logged([sys.executable, osp.join(TOOLS, 'test.py'), path, ckpt, '--work-dir',
                    tmp_dir, '--cfg-options', *opts], osp.join(work, 'test.log'))
        if osp.isdir(run_dir):
            shutil.rmtree(run_dir)
        os.replace(tmp_dir, run_dir)  # the run folder appears only once complete
        say(f'toy run {i}/{len(selected)} {stem}: done in {time.time() - start:.0f}s')


def step_full_runs(args, results):
    import torch
    if not torch.cuda.is_available():
        raise SystemExit('error: `full` needs CUDA GPUs; use `toy` on this machine')
    for what, path in (('COCO', osp.join(args.coco, 'annotations', 'instances_val2017.json')),
                       ('ADE20K', osp.join(args.ade, 'images', 'validation'))):
        if not osp.exists(path):
            raise SystemExit(f'error: {what} not found: {path} is missing')
    configs = [p for p in find_configs(CONFIG_DIRS)
               if not args.configs or any(fnmatch.fnmatch(osp.basename(p), pat)
                                          for pat in args.configs)]
    if not configs:
        raise SystemExit(f'error: no config matches {args.configs}')
    for i, path in enumerate(configs, 1):
        stem = osp.splitext(osp.basename(path))[0]
        scope = load_config(path).default_scope
        data = (f'train_dataloader.dataset.data_root={args.coco}/',
                f'val_dataloader.dataset.data_root={args.coco}/',
                f'test_dataloader.dataset.data_root={args.coco}/',
                f'val_evaluator.ann_file={args.coco}/annotations/instances_val2017.json',
                f'test_evaluator.ann_file={args.coco}/annotations/instances_val2017.json') \
            if scope == 'mmdet' else tuple(
                f'{s}_dataloader.dataset.data_root={args.ade}' for s in ('train', 'val', 'test'))
        work = osp.join(args.work_root, stem)
        tests = [('', [])] + ([('-tta', ['--tta'])] if args.tta and scope == 'mmseg' else [])
        if all(has_valid_metrics(osp.join(results, 'runs', stem + sfx)) for sfx, _ in tests) \
                and not args.force:
            say(f'{i}/{len(configs)} {stem}: done before')
            continue
        say(f'{i}/{len(configs)} {stem}: training on {args.gpus} GPUs per node')
        run_logged(['bash', osp.join(TOOLS, 'dist_train.sh'), path, str(args.gpus),
                    '--work-dir', work, '--resume', '--cfg-options', *data],
                   osp.join(work, 'dist_train.log'))
        ckpt = open(osp.join(work, 'last_checkpoint')).read().strip()
        for sfx, flags in tests:
            say(f'{i}/{len(configs)} {stem}: testing {osp.basename(ckpt)} {" ".join(flags)}')
            run_logged(['bash', osp.join(TOOLS, 'dist_test.sh'), path, ckpt, str(args.gpus),
                        '--work-dir', osp.join(results, 'runs', stem + sfx), *flags,
                        '--cfg-options', *data], osp.join(work, f'dist_test{sfx}.log'))


def _leaderboard(results):
    runs, rows = write_leaderboard(osp.join(results, 'runs'),
                                   osp.join(results, 'complexity.csv'), results)
    print(f'[leaderboard] {len(runs)} runs, {len(rows)} rows -> '
          f"{osp.join(results, 'leaderboard.csv')}, table2.md, table3.md, ap_vs_macs.png")


def run_toy(args):
    """Complexity, toy datasets, toy runs, leaderboard (see the module docstring)."""
    start = time.time()
    if not args.skip_complexity:
        step_complexity(args.results, args.force)
    step_toy_runs(step_toy_data(args.data), args.results, args.force, args.work_root,
                  args.only)
    _leaderboard(args.results)
    say(f'finished in {time.time() - start:.0f}s; see results/table2.md and results/table3.md')


def run_full(args):
    """Complexity, training and testing of every selected config on GPUs, leaderboard."""
    start = time.time()
    step_complexity(args.results, args.force)
    step_full_runs(args, args.results)
    _leaderboard(args.results)
    say(f'finished in {time.time() - start:.0f}s; see results/table2.md and results/table3.md')
