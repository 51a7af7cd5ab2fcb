"""Training hooks that keep a long run from being lost or silently wrong.

Our base configs add all three as ``custom_hooks``:

* :class:`RandomStateHook` puts the Python / numpy / torch generator states into every
  checkpoint and puts them back on ``--resume``, so a resumed run draws the same random
  numbers (augmentations, proposal sampling, drop-path) as one that never stopped.
  mmengine only re-seeds from the original seed, which replays epoch 1's numbers.
* :class:`NonFiniteLossHook` stops an fp32 run at the first NaN/inf loss, naming the
  iteration and the loss terms, before a checkpoint of NaN weights can be written.
  Under AMP the dynamic loss scale already skips such steps, so it only watches fp32.
* :class:`GracefulStopHook` turns SIGTERM (Slurm pre-emption, ``scancel``, ``kill``)
  into a clean stop after the current iteration: an iteration-based run saves a
  checkpoint there first; an epoch-based run resumes from its last epoch checkpoint
  (mmengine cannot resume in the middle of an epoch).
"""
import random
import signal

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

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
    """A loss term became NaN or inf in a run without a dynamic loss scale."""


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
        if not getattr(runner, '_resume', False):  # load_from / testing: a fresh start
            return
        states = checkpoint.get(RNG_KEY)
        if states is None:
            print_log('resumed checkpoint has no random states (saved without '
                      'RandomStateHook): random draws will differ from the original run',
                      logger='current', level=30)
            return
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
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
            loop.dataloader_iterator = _RestoreAfterSkip(loop.dataloader_iterator,
                                                         loop.iter, states)
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


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at the first NaN/inf loss of an fp32 run, before anything is saved.

    Runs before the CheckpointHook of the same iteration (higher priority), so the last
    checkpoint on disk holds the last finite weights. AMP runs (a dynamic loss scale
    skips non-finite steps and lowers the scale) are left to mmengine.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self):
        self.active = True

    def before_train(self, runner):
        wrapper = runner.optim_wrapper
        wrappers = wrapper.values() if hasattr(wrapper, 'values') else [wrapper]
        self.active = not any(type(w).__name__ == 'AmpOptimWrapper' for w in wrappers)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self.active:
            return
        bad = non_finite_terms(outputs)
        if bad:
            terms = ', '.join(f'{name}={value}' for name, value in bad)
            finite = [k for k in (outputs or {}) if k not in dict(bad)]
            raise NonFiniteLossError(
                f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                f'{terms}. Finite terms: {", ".join(finite) or "none"}. Training stopped '
                f'before this step was saved; the last checkpoint holds finite weights. '
                f'Usual causes: a learning rate too high for the batch size, a corrupt '
                f'annotation (empty or inverted box), or fp32 overflow.')


@HOOKS.register_module()
class GracefulStopHook(Hook):
    """On SIGTERM, finish the current iteration, save what can be resumed, and stop.

    Runs after the CheckpointHook of the same iteration (lowest priority). All ranks
    agree on stopping before anyone leaves the loop, so no rank waits in a collective.
    """
    priority = 'LOWEST'

    def __init__(self, signals=('SIGTERM',)):
        self.signals = [getattr(signal, name) for name in signals]
        self._received = None
        self._previous = {}

    def _on_signal(self, signum, frame):
        self._received = signum

    def before_train(self, runner):
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def after_train(self, runner):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _agreed_signal(self):
        signum = self._received or 0
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
        this_step = hook.file_backend.join_path(hook.out_dir, hook.filename_tmpl.format(step))
        if getattr(hook, 'last_ckpt', None) != this_step:  # not saved by its interval
            hook._save_checkpoint(runner)
        return hook.last_ckpt
