"""Training hooks that keep a long run from being lost or silently wrong.

Our base configs add all three as ``custom_hooks``:

* :class:`RandomStateHook` puts the Python / numpy / torch generator states into every
  checkpoint and puts them back on ``--resume``, so a resumed run draws the same random
  numbers (augmentations, proposal sampling, drop-path) as one that never stopped.
  mmengine only re-seeds from the original seed, which replays epoch 1's numbers.
* :class:`NonFiniteLossHook` stops an fp32 run at the first NaN/inf loss, naming the
  iteration and the loss terms, before a checkpoint of NaN weights can be written; under
  AMP it counts the steps the dynamic loss scale skips and stops when they persist.
* :class:`GracefulStopHook` turns SIGTERM (Slurm pre-emption, ``scancel``, ``kill``) and
  Ctrl-C (SIGINT) into a clean stop after the current iteration: an iteration-based run
  saves a checkpoint there first; an epoch-based run resumes from its last epoch
  checkpoint (mmengine cannot resume in the middle of an epoch). Both print the command
  that continues the run.
"""
import os
import random
import signal

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from . import mmengine_api as api

RNG_KEY = 'random_states'


class TrainingStopped(SystemExit):
    """Raised inside the train loop to stop on a signal; tools/train.py turns it into
    exit status 128 + signal number, as a shell reports a process killed by it."""

    def __init__(self, signum, message):
        super().__init__(128 + signum)
        self.signum = signum
        self.message = message

    def __str__(self):
        return self.message


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf (fp32), or the dynamic loss scale kept skipping
    steps (AMP)."""


def capture_random_states():
    states = dict(python=random.getstate(), numpy=np.random.get_state(),
                  torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states):
    random.setstate(_as_python_state(states['python']))
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def _as_python_state(state):
    # A checkpoint may hand lists back where random.getstate() gave tuples.
    version, internal, gauss = state
    return version, tuple(internal), gauss


class _RestoreAfterSkip:
    """Wraps the iteration loop's data iterator: on resume mmengine fetches (and drops)
    the batches already trained on; the saved states go back after the last of them, so
    the next batch is built with exactly the numbers the interrupted run would have used."""

    def __init__(self, iterator, skip, states):
        self.iterator, self.left, self.states = iterator, skip, states

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.iterator)
        self.left -= 1
        if self.left == 0:
            restore_random_states(self.states)
        return batch

    def __getattr__(self, name):
        return getattr(self.iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save generator states with each checkpoint; restore them when resuming.

    Validation runs between training steps are fenced off (states saved before, put
    back after), so a run's training numbers do not depend on when it validates.
    Multi-process runs: checkpoints hold rank 0's states (only rank 0 writes them); they
    are restored on every rank unless ``randomness.diff_rank_seed`` gave each rank its
    own stream, in which case ranks keep mmengine's re-seeding.
    """
    priority = 'VERY_HIGH'

    def __init__(self):
        self._pending = None
        self._fenced = None

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint[RNG_KEY] = capture_random_states()

    def after_load_checkpoint(self, runner, checkpoint):
        if not api.is_resuming(runner):  # load_from / testing: a fresh start
            return
        states = checkpoint.get(RNG_KEY)
        if states is None:
            print_log('resumed checkpoint has no random states (saved without '
                      'RandomStateHook): random draws will differ from the original run',
                      logger='current', level=30)
            return
        diff_rank_seed = api.randomness_cfg(runner).get('diff_rank_seed', False)
        if get_world_size() > 1 and diff_rank_seed and runner.rank != 0:
            return
        self._pending = states

    def before_train_epoch(self, runner):
        if self._pending is None:
            return
        loop, states = runner.train_loop, self._pending
        self._pending = None
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            # run() skips `iter` batches after this hook; restore once they are drawn.
            skip = loop.iter
            api.replace_loop_iterator(loop, lambda it: _RestoreAfterSkip(it, skip, states))
        else:
            restore_random_states(states)

    def before_val(self, runner):
        self._fenced = capture_random_states()

    def after_val(self, runner):
        if self._fenced is not None:
            restore_random_states(self._fenced)
            self._fenced = None


def non_finite_terms(outputs):
    """Names and values of the non-finite entries of a train step's ``log_vars``."""
    bad = []
    for name, value in (outputs or {}).items():
        value = torch.as_tensor(value, dtype=torch.float64)
        if not torch.isfinite(value).all():
            bad.append((name, value.flatten()[0].item() if value.numel() else value))
    return bad


def _wrappers(runner):
    wrapper = runner.optim_wrapper
    return list(wrapper.values()) if hasattr(wrapper, 'values') else [wrapper]


_CAUSES = ('Usual causes: a learning rate too high for the batch size, a corrupt '
           'annotation (empty or inverted box), NaN/inf pretrained weights, or overflow.')


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop a run whose losses are NaN/inf, before a checkpoint of bad weights is written.

    * fp32: at the first non-finite ``log_vars`` entry.
    * AMP: the dynamic loss scale skips a step whose gradients are non-finite and halves
      the scale; a few skips at the start of a run are how it calibrates. A skipped step
      is seen as a drop of ``loss_scaler.get_scale()`` after an update; ``amp_patience``
      skips in a row (20: from 2**16 the scale is then below 1/16, where no finite
      gradient of a working run is) stop the run: every step since has been thrown away.
      A static (float) loss scale never drops, so such runs are not covered.

    Runs before the CheckpointHook of the same iteration (higher priority), so the last
    checkpoint on disk holds the last finite weights.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, amp_patience=20):
        if not (isinstance(amp_patience, int) and amp_patience > 0):
            raise ValueError(f'amp_patience must be a positive int, got {amp_patience!r}')
        self.amp_patience = amp_patience
        self.active = True
        self._amp = []  # [(wrapper, scaler, last scale)]
        self.skipped_in_a_row = 0
        self.skipped_total = 0
        self._streak_start = None

    def before_train(self, runner):
        self._amp = [(w, api.loss_scaler(w)) for w in _wrappers(runner) if api.loss_scaler(w)]
        self._amp = [[w, s, s.get_scale()] for w, s in self._amp]
        self.active = not self._amp

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._amp:
            self._watch_scale(runner, outputs)
        elif self.active:
            self._check_losses(runner, outputs)

    def _check_losses(self, runner, outputs):
        bad = non_finite_terms(outputs)
        if bad:
            terms = ', '.join(f'{name}={value}' for name, value in bad)
            finite = [k for k in (outputs or {}) if k not in dict(bad)]
            raise NonFiniteLossError(
                f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                f'{terms}. Finite terms: {", ".join(finite) or "none"}. Training stopped '
                f'before this step was saved; the last checkpoint holds finite weights. '
                f'{_CAUSES}')

    def _watch_scale(self, runner, outputs):
        updated, dropped = False, None
        for entry in self._amp:
            wrapper, scaler, before = entry
            if hasattr(wrapper, 'should_update') and not wrapper.should_update():
                continue  # accumulating gradients: no step (and no scale update) this time
            updated, entry[2] = True, scaler.get_scale()
            if entry[2] < before:
                dropped = (before, entry[2])
        if not updated:
            return
        if dropped is None:  # a step was taken: the streak is over
            self.skipped_in_a_row, self._streak_start = 0, None
            return
        self.skipped_in_a_row += 1
        self.skipped_total += 1
        step = runner.iter + 1
        self._streak_start = self._streak_start or step
        print_log(f'AMP: step of iteration {step} skipped (non-finite gradients); loss scale '
                  f'{dropped[0]:g} -> {dropped[1]:g} ({self.skipped_in_a_row} in a row, '
                  f'{self.skipped_total} in all)', logger='current',
                  level=30 if self.skipped_in_a_row > 1 else 20)
        if self.skipped_in_a_row >= self.amp_patience:
            bad = non_finite_terms(outputs)
            terms = ', '.join(f'{n}={v}' for n, v in bad) or 'none (the gradients overflow)'
            raise NonFiniteLossError(
                f'AMP: {self.skipped_in_a_row} optimizer steps in a row were skipped by the '
                f'dynamic loss scale (iterations {self._streak_start}-{step}, loss scale now '
                f'{dropped[1]:g}): their gradients were NaN/inf, so the weights have not '
                f'changed since iteration {self._streak_start - 1}. Non-finite loss terms '
                f'at the last step: {terms}. Training stopped before this step was saved. '
                f'{_CAUSES} (patience: NonFiniteLossHook amp_patience={self.amp_patience})')


class StopSignals:
    """Which stop signal (SIGTERM, SIGINT...) this process received: one per process.

    tools/train.py installs it before the Runner builds its data loaders, so their worker
    processes (forked from this one) inherit the handler and are not killed by the Ctrl-C
    a terminal sends to every process of the job; :class:`GracefulStopHook` reads it after
    each iteration. A second Ctrl-C interrupts at once (KeyboardInterrupt), as usual.
    """

    def __init__(self):
        self.received = None
        self._previous = {}
        self._pid = None

    def install(self, signums):
        self._pid = os.getpid()
        for signum in signums:
            if signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self.received = None

    def _on_signal(self, signum, frame):
        if os.getpid() != self._pid:  # a forked data loader worker: the main process decides
            return
        if signum == signal.SIGINT and self.received is not None:
            self.uninstall()
            raise KeyboardInterrupt
        self.received = self.received or signum
        # os.write: print() or logging could re-enter an interrupted write of the same stream
        os.write(2, f'\nreceived {signal.Signals(signum).name}: stopping after the current '
                    f'iteration (Ctrl-C again to stop at once)\n'.encode())


STOP_SIGNALS = StopSignals()


def _signal_numbers(names):
    return [getattr(signal, name) for name in names]


def install_stop_signals(cfg):
    """Install the stop signals of ``cfg``'s GracefulStopHook now (see StopSignals)."""
    for hook in cfg.get('custom_hooks') or []:
        if isinstance(hook, dict) and hook.get('type') in ('GracefulStopHook', GracefulStopHook):
            signals = hook.get('signals', GracefulStopHook.default_signals)
            STOP_SIGNALS.install(_signal_numbers(signals))


@HOOKS.register_module()
class GracefulStopHook(Hook):
    """On SIGTERM or Ctrl-C (SIGINT), finish the current iteration, save what can be
    resumed, print how to resume, and stop.

    Runs after the CheckpointHook of the same iteration (lowest priority). All ranks
    agree on stopping before anyone leaves the loop, so no rank waits in a collective.
    """
    priority = 'LOWEST'
    default_signals = ('SIGTERM', 'SIGINT')

    def __init__(self, signals=default_signals):
        self.signals = _signal_numbers(signals)

    def before_train(self, runner):
        STOP_SIGNALS.install(self.signals)

    def after_train(self, runner):
        STOP_SIGNALS.uninstall()

    @staticmethod
    def _agreed_signal():
        signum = STOP_SIGNALS.received or 0
        if get_world_size() > 1:
            import torch.distributed as dist
            device = 'cuda' if dist.get_backend() == 'nccl' else 'cpu'
            flag = torch.tensor([signum], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        return signum

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        signum = self._agreed_signal()
        if not signum:
            return
        name = signal.Signals(signum).name
        step = runner.iter + 1
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            ckpt = self._save_now(runner, step)
            where = f'checkpoint {ckpt} holds iteration {step}'
        else:
            last = runner.message_hub.get_info('last_ckpt')
            where = (f'an epoch-based run resumes from its last epoch checkpoint '
                     f'({last or "none saved yet"})')
        config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
        raise TrainingStopped(
            signum, f'received {name}: stopped after iteration {step}; {where}. Continue '
                    f'with: tools/train.py {config} --work-dir {runner.work_dir} --resume')

    @staticmethod
    def _save_now(runner, step):
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None or hook.by_epoch:
            raise RuntimeError('GracefulStopHook needs an iteration CheckpointHook to save')
        if api.last_saved(hook) != api.checkpoint_path(hook, step):  # not saved by interval
            return api.save_checkpoint_now(hook, runner)
        return api.last_saved(hook)
