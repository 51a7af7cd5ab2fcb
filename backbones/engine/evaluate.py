"""What ``tools/test.py`` does once its arguments are parsed."""
import os
import os.path as osp
import sys

from mmengine.config import ConfigDict

from ..datasets.walk import innermost_dataset
from ..preflight import PreflightError, preflight
from ..preflight.checks import checkpoint_unreadable
from ..results.runs import PARTIAL_RECORD, write_run_record
from .env import collect_env
from .launch import default_work_dir, load_config, log_notes, setup_device
from .runtime import leave_process_group
from .train import claim_work_dir

__all__ = ['evaluate']


def apply_tta(cfg):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise SystemExit('error: --tta needs tta_model and tta_pipeline in the config')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    _, dataset = innermost_dataset(cfg.test_dataloader)
    dataset.pipeline = cfg.tta_pipeline


def _apply_flags(cfg, args):
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    cfg.load_from = args.checkpoint
    if args.tta:
        apply_tta(cfg)
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise SystemExit('error: --show-dir needs default_hooks.visualization in the config')
        hook.draw = True
        if cfg.default_scope == 'mmdet':
            hook.test_out_dir = osp.abspath(args.show_dir)
        else:
            cfg.visualizer.save_dir = osp.abspath(args.show_dir)
    if args.out and cfg.default_scope == 'mmseg':
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    if args.out and cfg.default_scope == 'mmdet' and \
            not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit('error: --out must be a .pkl file for detection')


def _preflight(cfg, args):
    """The pre-flight checks, the checkpoint fitting the model included; returns their
    findings (``partial``: the key mismatch ``--allow-partial`` let through, ``allowed``:
    the checks ``--allow`` let through)."""
    try:  # the backbone's ImageNet checkpoint is not needed to test a trained model
        return preflight(cfg, ('test',), checkpoint=args.checkpoint, pretrained=False,
                         fit_checkpoint=True, allow_partial=args.allow_partial,
                         data=not args.no_data_check, full=args.full_data_check,
                         allow=getattr(args, 'allow', ()) or ())
    except PreflightError as err:
        sys.exit(f'error: {args.checkpoint} cannot be tested with {args.config}:\n{err}'
                 + ('\n(--allow-partial evaluates a checkpoint whose keys do not match; '
                    'its metrics are never written to metrics.json)'
                    if 'does not match' in str(err) else ''))


def evaluate(args):
    """Evaluate ``args.checkpoint`` (tools/test.py's arguments) and write the run record.

    As in training, the work dir is checked and locked (one run per work dir), after a
    pre-flight that writes nothing when it refuses."""
    unreadable = checkpoint_unreadable(args.checkpoint)
    if unreadable:
        raise SystemExit(f'error: {unreadable}')
    cfg = load_config(args.config, args.cfg_options)
    _apply_flags(cfg, args)
    lock = claim_work_dir(cfg.work_dir, 'tools/test.py')
    found = dict(partial='', allowed=[])
    if os.environ.get('LOCAL_RANK', '0') == '0':  # see backbones/engine/train.py
        found = _preflight(cfg, args)

    with lock:
        notes = setup_device(cfg, args.launcher)

        from mmengine.registry import RUNNERS
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        log_notes(notes)
        if args.out and cfg.default_scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        metrics = runner.test()
        if runner.rank == 0:
            flags = write_run_record(cfg.work_dir, cfg, metrics, config=args.config,
                                     checkpoint=args.checkpoint, tta=args.tta,
                                     world_size=runner.world_size, env=collect_env(),
                                     partial=found['partial'] or None,
                                     allowed=found.get('allowed') or ())
            _report(runner, cfg, flags, found['partial'])
        leave_process_group()


def _report(runner, cfg, flags, partial):
    if partial:
        runner.logger.warning(
            f'--allow-partial: the checkpoint did not fit the model, so these metrics were '
            f'written to {osp.join(cfg.work_dir, PARTIAL_RECORD)}, not metrics.json: they '
            f'are not a result of this model and the leaderboard does not collect them')
    for flag in flags:
        runner.logger.warning(f'metrics flagged, the leaderboard will skip this run: {flag}')
