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

``release`` re-evaluates the checkpoints the authors of the rows released
(results/releases.csv, :mod:`backbones.releases`): for each selected row it takes the file from
``--ckpt-dir`` (or downloads it with ``--download``), checks its sha256, converts it strictly
into the row's config, evaluates it with tools/dist_test.sh (``--gpus 0``: tools/test.py in
this process, on the CPU) into results/runs/release-*, whose records say ``source: release``
with the file's sha256, then rebuilds the leaderboard. A row that fails is reported and
skipped; ``--dry-run`` lists what would be done and which files are missing.

Finished steps are skipped on a second run (complexity rows whose config is unchanged, run
folders with a valid metrics.json, converted checkpoints of the same file); ``--force``
redoes them.
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
from ..datasets.toy_options import TOY_RCNN_SAMPLES, toy_cfg_options
from ..engine.launch import REPO, find_configs, load_config
from ..metadata import load_rows
from .leaderboard import write_leaderboard
from .runs import RunError, load_run

__all__ = ['run_toy', 'run_full', 'run_release', 'release_plan', 'toy_runs']

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
    # 64 images, batch 4: 16 iterations per epoch. MambaOut-Femto reached box AP50 61.3 on the
    # toy val set after 4 epochs (64 iterations; tests/test_reproduce.py), 238 s on 2 CPU cores
    # with TOY_RCNN_SAMPLES (400 s and AP50 58.2 with the recipe's 512).
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
        opts = toy_cfg_options(cfg, roots[cfg.default_scope], scale=TOY_SCALE, batch_size=4,
                               rcnn_samples=TOY_RCNN_SAMPLES) + TOY_SCHEDULE[cfg.default_scope] + [
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


# ---- release: re-evaluate the checkpoints the rows' authors released --------------------
class ReleaseSkip(Exception):
    """A release row that cannot be done now (reported, the others go on)."""


def select_releases(rows=None, configs=None, tasks=None, manifest=None):
    """The manifest rows matching the ``--rows`` / ``--configs`` patterns and tasks."""
    from ..metadata import load_releases
    items = load_releases(manifest)
    chosen = [r for r in items
              if (not rows or any(fnmatch.fnmatch(r.row, p) for p in rows))
              and (not configs or any(fnmatch.fnmatch(osp.basename(c), p) for p in configs
                                      for c in (r.config, r.ms_config) if c))
              and (not tasks or r.task in tasks)]
    if not chosen:
        raise SystemExit(f'error: no row of the release manifest matches rows={rows} '
                         f'configs={configs} tasks={tasks}; rows: '
                         f'{", ".join(sorted({r.row for r in items}))}')
    return chosen


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def release_runs(rel, results, tta):
    """``[(config path, multi-scale?, run folder)]`` of a manifest row: single-scale with its
    config, and with ``tta`` multi-scale + flip with its ``ms_config`` (if it has one)."""
    runs = [(rel.config_path(), False)]
    if tta and rel.ms_config:
        runs.append((rel.config_path(multi_scale=True), True))
    return [(cfg, ms, osp.join(results, 'runs', f'release-{_stem(cfg)}' + ('-tta' if ms else '')))
            for cfg, ms in runs]


def _release_record(folder):
    """The release record of ``folder`` if it is complete and passes the schema (flagged or
    not: a flagged result is a result of that file too), else None."""
    import json

    from .schema import validate_run
    try:
        with open(osp.join(folder, 'metrics.json')) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    return rec if not validate_run(folder, rec) and rec.get('source') == 'release' else None


def _release_done(folder, rel):
    rec = _release_record(folder)
    return bool(rec and (not rel.sha256 or (rec.get('release') or {}).get('sha256') ==
                         rel.sha256))


def _fetch_hint(rel, path):
    if rel.manual:
        return (f'{rel.url} is hosted on Google Drive only: open it in a browser, download the '
                f'file and save it as {path}')
    return f'download {rel.url} to {path}, or run with --download'


def release_plan(args):
    """What ``release`` would do for the selected rows, without doing it: one entry per row
    (row, task, layout, config(s), file, whether it is there, action)."""
    plan = []
    for rel in select_releases(args.rows, args.configs, args.tasks, args.manifest):
        path = osp.join(args.ckpt_dir, rel.file)
        runs = release_runs(rel, args.results, args.tta)
        done = [osp.basename(f) for _, _, f in runs if _release_done(f, rel)]
        if len(done) == len(runs) and not args.force:
            action = 'done before'
        elif osp.isfile(path):
            action = 'verify, convert, evaluate'
        elif not rel.manual and args.download:
            action = 'download, verify, convert, evaluate'
        else:
            action = 'MISSING: ' + _fetch_hint(rel, path)
        plan.append(dict(row=rel.row, task=rel.task, layout=rel.layout,
                         configs=[osp.relpath(c, REPO) + (' --tta' if ms else '')
                                  for c, ms, _ in runs],
                         file=path, present=osp.isfile(path), manual=rel.manual,
                         sha256=rel.sha256 or '(recorded at the first verified file)',
                         protocol=rel.protocol, caveat=rel.caveat, action=action))
    return plan


def _print_plan(plan, args):
    say(f'release: {len(plan)} rows ({sum(p["task"] == "det" for p in plan)} det, '
        f'{sum(p["task"] == "seg" for p in plan)} seg), checkpoints in {args.ckpt_dir}')
    for p in plan:
        print(f'  {p["task"]}  {p["row"]:<15} {p["layout"]:<19} {" + ".join(p["configs"])}')
        print(f'       {p["action"]}' + ('' if p['action'].startswith('MISSING') else
                                        f' ({osp.basename(p["file"])})'))
    missing = [p for p in plan if not p['present']]
    say(f'release: {len(plan) - len(missing)} files present, {len(missing)} missing '
        f'({sum(not p["manual"] for p in missing)} plain HTTP: --download fetches them; '
        f'{sum(p["manual"] for p in missing)} Google Drive only: by hand); '
        f'{sum(p["action"] == "done before" for p in plan)} rows done before; '
        f'{sum(len(p["configs"]) for p in plan)} evaluations')


def _data_options(task, args, cfg):
    from ..releases.toy import coco80_toy, release_toy_options
    if args.toy:
        if task == 'det':
            root = coco80_toy(osp.join(args.toy, 'coco'),
                              osp.join(args.work_root, 'release', 'toy-coco80'))
        else:
            root = osp.join(args.toy, 'ade', 'ADEChallengeData2016')
        return release_toy_options(cfg, root, scale=args.toy_scale)
    if task == 'det':
        ann = f'{args.coco}/annotations/instances_val2017.json'
        return [f'{s}_dataloader.dataset.data_root={args.coco}/' for s in ('val', 'test')] + \
            [f'{s}_evaluator.ann_file={ann}' for s in ('val', 'test')]
    return [f'{s}_dataloader.dataset.data_root={args.ade}' for s in ('val', 'test')]


def _check_release_data(args, tasks):
    if args.toy:
        for task, sub in (('det', 'coco'), ('seg', 'ade/ADEChallengeData2016')):
            if task in tasks and not osp.isfile(osp.join(args.toy, sub, TOY_MARKER)):
                raise SystemExit(f'error: no toy {sub} in {args.toy} (python tools/'
                                 f'make_toy_data.py --out {args.toy})')
        return
    for task, what, path in (
            ('det', 'COCO', osp.join(args.coco, 'annotations', 'instances_val2017.json')),
            ('seg', 'ADE20K', osp.join(args.ade, 'images', 'validation'))):
        if task in tasks and not osp.exists(path):
            raise SystemExit(f'error: {what} not found: {path} is missing (--coco / --ade)')


def _converted_sha(path):
    import torch
    try:
        meta = torch.load(path, map_location='cpu', weights_only=True, mmap=True).get('meta')
        return (meta or {}).get('release', {}).get('sha256')
    except Exception:  # unreadable: convert again
        return None


def _evaluate_release(cfg, ckpt, work_dir, ms, opts, args, log):
    argv = [cfg, ckpt, '--work-dir', work_dir] + (['--tta'] if ms else []) + \
        (['--cfg-options', *opts] if opts else [])
    if args.gpus == 0:  # tools/test.py itself, in this process, on this machine's CPU
        import importlib.util
        # mmengine keeps one Visualizer per name for the process; a fresh name per run keeps
        # the next run from writing into this run's folder
        _evaluate_release.count = getattr(_evaluate_release, 'count', 0) + 1
        argv += ([] if opts else ['--cfg-options']) + [
            f'visualizer.name=release-{os.getpid()}-{_evaluate_release.count}']
        spec = importlib.util.spec_from_file_location('tools_test', osp.join(TOOLS, 'test.py'))
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        try:
            tool.main(argv)
        except SystemExit as err:
            if err.code not in (None, 0):
                raise ReleaseSkip(f'tools/test.py failed: {err.code}') from None
        return
    os.environ.setdefault('PYTHON', sys.executable)  # the interpreter dist_run.sh starts
    try:
        run_logged(['bash', osp.join(TOOLS, 'dist_test.sh'), cfg, ckpt, str(args.gpus)]
                   + argv[2:], log)
    except SystemExit as err:
        raise ReleaseSkip(str(err)) from None


def _stamp_release(folder, rel, sha, converted, ms):
    """Mark the fresh record in ``folder`` as a re-evaluated release (``source: release``,
    the file's sha256 and where it came from); the schema checks it again before writing."""
    from .runs import stamp_record
    return stamp_record(folder, source='release', release=dict(
        row=rel.row, task=rel.task, url=rel.url, file=rel.file, sha256=sha, layout=rel.layout,
        multi_scale=ms, protocol=rel.protocol, release_config=rel.release_config,
        converted=osp.abspath(converted)))


def _release_row(rel, args, tag):
    from ..engine.checkpoint import check_checkpoint_file
    from ..releases import convert_release_file, sha256_file
    from ..releases.download import download, name_hash_prefix, record_sha256
    runs = release_runs(rel, args.results, args.tta)
    if not args.force and all(_release_done(folder, rel) for _, _, folder in runs):
        say(f'{tag}: done before ({", ".join(osp.basename(f) for _, _, f in runs)})')
        return 'done'
    path = osp.join(args.ckpt_dir, rel.file)
    if not osp.isfile(path):
        if rel.manual or not args.download:
            raise ReleaseSkip(f'{path} is missing: ' + _fetch_hint(rel, path))
        say(f'{tag}: downloading {rel.url}')
        try:
            download(rel.url, path)
        except Exception as err:
            raise ReleaseSkip(f'download failed: {err}') from None
    check_checkpoint_file(path)
    sha = sha256_file(path)
    if rel.sha256 and sha != rel.sha256:
        raise ReleaseSkip(f'{path} has sha256 {sha}, but {args.manifest} recorded {rel.sha256} '
                          f'for this row at its first verified file: another or a damaged '
                          f'file; delete it and fetch it again')
    prefix = name_hash_prefix(rel.file)
    if prefix and not sha.startswith(prefix):
        raise ReleaseSkip(f'{path} has sha256 {sha}, but its model-zoo name says it starts '
                          f'with {prefix}: a damaged or different file')
    work = osp.join(args.work_root, 'release', _stem(rel.config_path()))
    converted = osp.join(work, 'converted.pth')
    if args.force or _converted_sha(converted) != sha:
        say(f'{tag}: converting {rel.file} ({rel.layout}) for {osp.basename(rel.config)}')
        dropped = convert_release_file(path, rel.config_path(), rel.layout, converted,
                                       provenance=dict(row=rel.row, sha256=sha, url=rel.url))
        for why in sorted(set(dropped.values())):
            keys = sorted(k for k, w in dropped.items() if w == why)
            say(f'{tag}:   left out {len(keys)} key(s), {why}: backbone.{keys[0]}'
                + (', ...' if len(keys) > 1 else ''))
    if not rel.sha256:
        record_sha256(args.manifest, rel.row, rel.task, sha)
        say(f'{tag}: sha256 {sha} recorded in {osp.relpath(args.manifest, REPO)}')
    flagged = []
    for cfg_path, ms, folder in runs:
        if _release_done(folder, rel) and not args.force:
            continue
        from ..engine.launch import load_config
        opts = _data_options(rel.task, args, load_config(cfg_path)) + \
            list(getattr(args, 'cfg_options', None) or [])
        tmp = folder + '.partial'
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
        where = f'on {args.gpus} GPU(s)' if args.gpus else 'in this process (CPU)'
        say(f'{tag}: evaluating {osp.basename(cfg_path)}{" --tta" if ms else ""} {where}')
        _evaluate_release(cfg_path, converted, tmp, ms, opts, args,
                          osp.join(work, f'test{"-tta" if ms else ""}.log'))
        if not osp.isfile(osp.join(tmp, 'metrics.json')):
            raise ReleaseSkip(f'tools/test.py wrote no metrics.json into {tmp}')
        rec = _stamp_release(tmp, rel, sha, converted, ms)
        if osp.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)  # the run folder appears only once complete
        flagged += rec.get('flags') or []
        say(f'{tag}: {osp.basename(folder)} written' +
            (f' (flagged, the leaderboard skips it: {"; ".join(rec["flags"])})'
             if rec.get('flags') else ''))
    return 'flagged' if flagged else 'evaluated'


def run_release(args):
    """Verify, convert and evaluate the released checkpoints of the selected rows, then the
    leaderboard (see the module docstring). Returns ``{row (task): outcome}``."""
    start = time.time()
    if args.dry_run:
        plan = release_plan(args)
        _print_plan(plan, args)
        return {f'{p["row"]} ({p["task"]})': p['action'] for p in plan}
    chosen = select_releases(args.rows, args.configs, args.tasks, args.manifest)
    _check_release_data(args, {r.task for r in chosen})
    import torch
    if args.gpus and not torch.cuda.is_available():
        say(f'no CUDA device: {args.gpus} process(es) evaluate on the CPU')
    outcome = {}
    for i, rel in enumerate(chosen, 1):
        tag = f'{i}/{len(chosen)} {rel.row} ({rel.task})'
        try:
            outcome[f'{rel.row} ({rel.task})'] = _release_row(rel, args, tag)
        except Exception as err:  # reported and skipped, never half-written
            outcome[f'{rel.row} ({rel.task})'] = f'failed: {err}'
            say(f'{tag}: SKIPPED: {err}')
    if not args.no_leaderboard:
        _leaderboard(args.results)
    failed = {k: v for k, v in outcome.items() if v.startswith('failed')}
    say(f'release: {len(outcome) - len(failed)} of {len(outcome)} rows done in '
        f'{time.time() - start:.0f}s' + (f'; failed: {", ".join(failed)}' if failed else ''))
    if failed:
        raise SystemExit(1)
    return outcome
