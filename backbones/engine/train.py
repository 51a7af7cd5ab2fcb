"""What ``tools/train.py`` does once its arguments are parsed."""
import os
import sys
from contextlib import nullcontext

from ..preflight import PreflightError, preflight
from .launch import default_work_dir, load_config, log_notes, setup_device, work_dir_problem
from .lock import WorkDirLock, WorkDirLocked, check_unlocked
from .resume import find_resume_checkpoint, remove_partial_writes
from .runtime import leave_process_group

__all__ = ['train', 'claim_work_dir']


def _apply_flags(cfg, args):
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    if args.amp and cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
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


def _preflight(cfg, args):
    """The pre-flight checks; the checkpoint ``--resume`` continues must fit the model (a
    plain ``load_from`` may be partial on purpose, e.g. fine-tuning: only a warning)."""
    try:
        return preflight(cfg, ('train', 'val'), checkpoint=cfg.get('load_from'),
                         data=not args.no_data_check, fit_checkpoint=True,
                         allow_partial=not cfg.get('resume'),
                         full=getattr(args, 'full_data_check', False),
                         allow=getattr(args, 'allow', ()) or ())
    except PreflightError as err:
        sys.exit(f'error: {args.config} cannot be trained as configured:\n{err}')


def claim_work_dir(work_dir, tool):
    """Before any check that takes time: the work dir can be used and no live run holds
    it (writes nothing). Returns the lock to hold for the run's lifetime, taken only on
    global rank 0 (other ranks and nodes never touch it): enter it once the pre-flight
    has passed."""
    if os.environ.get('RANK', '0') != '0':
        return nullcontext()
    problem = work_dir_problem(work_dir)
    if problem:
        sys.exit(f'error: {problem}')
    try:
        check_unlocked(work_dir)
    except WorkDirLocked as err:
        sys.exit(f'error: {err}')
    return _Held(WorkDirLock(work_dir, tool))


class _Held:
    """The lock as a context manager whose refusal (a run that started between our check
    and our claim) is the same clean error."""

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        try:
            return self.lock.acquire()
        except WorkDirLocked as err:
            sys.exit(f'error: {err}')

    def __exit__(self, *exc):
        self.lock.release()
        return False


def train(args):
    """Train ``args.config`` (tools/train.py's arguments): pre-flight checks, then the Runner.

    Everything that can be checked before the Runner creates the work dir is checked first,
    once per node; torchrun stops the other ranks when this one exits. The work dir is
    then locked for the run's lifetime (one run per work dir, :mod:`.lock`).
    """
    cfg = load_config(args.config, args.cfg_options)
    _apply_flags(cfg, args)
    lock = claim_work_dir(cfg.work_dir, 'tools/train.py')
    if os.environ.get('LOCAL_RANK', '0') == '0':
        _preflight(cfg, args)

    from .hooks import STOP_SIGNALS, NonFiniteLossError, TrainingStopped, install_stop_signals
    install_stop_signals(cfg)  # before the loaders fork their workers (hooks.StopSignals)
    try:
        with lock:
            if cfg.resume and os.environ.get('RANK', '0') == '0':
                remove_partial_writes(cfg.work_dir)
            notes = setup_device(cfg, args.launcher)

            from mmengine.registry import RUNNERS
            from mmengine.runner import Runner
            runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
            log_notes(notes)
            _run(runner, cfg, args, TrainingStopped, NonFiniteLossError)
            leave_process_group()
    finally:
        STOP_SIGNALS.uninstall()


def _run(runner, cfg, args, stopped, non_finite):
    try:
        runner.train()
    except stopped as stop:
        runner.logger.warning(str(stop))
        sys.exit(stop.code)
    except non_finite as err:
        runner.logger.error(str(err))
        sys.exit(f'error: {err}')
    except KeyboardInterrupt:  # a second Ctrl-C (or SIGINT not handled): the last checkpoint
        runner.logger.warning(
            f'KeyboardInterrupt: stopped at once, mid-iteration. Continue from the last '
            f'checkpoint with: tools/train.py {args.config} --work-dir {cfg.work_dir} --resume')
        sys.exit(128 + 2)
