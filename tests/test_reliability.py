"""Interrupted runs resume exactly (and a restart cannot pass for a resume), SIGTERM and
Ctrl-C stop cleanly, checkpoints cannot run code, NaN losses stop fp32 and AMP training,
checkpoint writes are atomic. Bad input refused before a run: tests/test_preflight.py."""
import json
import os
import os.path as osp
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from backbones.engine.resume import find_resume_checkpoint, remove_partial_writes
from conftest import REPO, TOOLS, load_tool, toy_options

train = load_tool('train')

DET = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco.py')
SEG = osp.join(REPO, 'seg_configs', 'upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py')
TOL = 1e-6

# Small, fast, and with a learning rate that moves weights well beyond TOL per step, so
# any difference in the random numbers drawn after a resume shows in the final weights.
COMMON = ['randomness.seed=0', 'model.backbone.init_cfg=None', 'optim_wrapper.optimizer.lr=1e-3',
          'param_scheduler.0.start_factor=1.0', 'default_hooks.logger.interval=1']
TASKS = {
    'det': dict(config=DET, data='coco', final='epoch_2.pth', iters=8,
                options=['train_cfg.max_epochs=2'], kill_at='Epoch(train) [2][2/4]'),
    'seg': dict(config=SEG, data='ade', final='iter_8.pth', iters=8,
                options=['train_cfg.max_iters=8', 'train_cfg.val_interval=8',
                         'default_hooks.checkpoint.interval=4'],
                kill_at='Iter(train) [5/8]'),  # stops at 5 or 6: >= 2 iterations left
}


def _env():
    return dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def _train_cmd(task, toy_data, work_dir, *extra, options=()):
    spec = TASKS[task]
    opts = toy_options(spec['config'], toy_data[spec['data']], scale=128)
    return [sys.executable, osp.join(TOOLS, 'train.py'), spec['config'], '--work-dir',
            str(work_dir), *extra, '--cfg-options', *opts, *COMMON, *spec['options'], *options]


def _run(cmd, stop_at=None, signum=None, timeout=900):
    """Run ``cmd``; with ``stop_at``, send ``signum`` once that text appears in its log.

    The child runs in a session of its own and the signal goes to its whole process group,
    as a terminal's Ctrl-C or Slurm's pre-emption reaches every process of a job.
    """
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    if stop_at:
        for line in proc.stdout:
            lines.append(line)
            if stop_at in line:
                os.killpg(proc.pid, signum)
                break
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, ''.join(lines) + out


def _weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(((x.double() - b[k].double()).abs().max().item(), k) for k, x in a.items())


def _final_metrics(work_dir):
    """Metrics of the last validation, from the newest run folder's scalars.json."""
    runs = sorted(d for d in os.listdir(work_dir) if d[:8].isdigit())
    with open(osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')) as f:
        records = [json.loads(line) for line in f]
    metrics = [r for r in records if 'coco/bbox_mAP' in r or 'mIoU' in r][-1]
    return {k: v for k, v in metrics.items() if k.startswith('coco/') or k in ('mIoU', 'aAcc',
                                                                              'mAcc')}


_TRAIN_LINE = re.compile(r'(?:Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/\d+\]|'
                         r'Iter\(train\)\s+\[\s*(\d+)/\d+\]).*?\sloss: ([\d.]+)')
ITERS_PER_EPOCH = 4  # the toy det set: 8 images, batch 2


def train_losses(log):
    """``[(global iteration, logged loss)]`` of every training iteration in a log, in order
    (LoggerHook interval 1, so each line is that iteration's own loss, 4 decimals)."""
    steps = []
    for epoch, in_epoch, it, loss in _TRAIN_LINE.findall(log):
        step = int(it) if it else (int(epoch) - 1) * ITERS_PER_EPOCH + int(in_epoch)
        steps.append((step, loss))
    return steps


def assert_resumed_at(log, task, step):
    """``log`` is a run resumed after ``step`` iterations: mmengine says where it resumed,
    and training goes on at ``step + 1``, through to the end, never from iteration 1."""
    epoch = step // ITERS_PER_EPOCH if task == 'det' else 0
    assert f'resumed epoch: {epoch}, iter: {step}' in log, 'no "resumed ... iter" line'
    steps = [s for s, _ in train_losses(log)]
    assert steps == list(range(step + 1, TASKS[task]['iters'] + 1)), steps


def _stopped_after(task, signum, log):
    """The iteration a stopped run resumes after: an iteration loop saved where it
    stopped; an epoch loop (or a killed run) goes back to its last interval checkpoint."""
    if signum == signal.SIGKILL or task == 'det':
        return 4  # det: epoch_1.pth; seg: iter_4.pth
    return int(re.search(r'stopped after iteration (\d+)', log).group(1))


@pytest.fixture(scope='module')
def reference(toy_data, tmp_path_factory):
    """One uninterrupted run per task (the numbers a resumed run must reproduce), with its
    log: a from-scratch run, i.e. what a --resume that silently restarted would produce."""
    out = {}
    for task, spec in TASKS.items():
        work_dir = tmp_path_factory.mktemp(f'ref-{task}')
        code, log = _run(_train_cmd(task, toy_data, work_dir))
        assert code == 0, log[-4000:]
        out[task] = work_dir
        out[f'{task}-log'] = log
    return out


# CI stops each loop once the hard way and once cleanly: the epoch loop (det) by SIGKILL (stale
# lock, last interval checkpoint) and SIGTERM, the iteration loop (seg) by SIGINT (checkpoint
# where it stopped); SIGTERM and SIGINT share one handler. The other pairs: checklist.
CASES = [pytest.param(task, signum, id=f'{task}-{signum.name}',
                      marks=() if (task, signum) in {('det', signal.SIGKILL),
                                                     ('det', signal.SIGTERM),
                                                     ('seg', signal.SIGINT)}
                      else pytest.mark.checklist)
         for task in ('det', 'seg') for signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)]


@pytest.mark.slow
@pytest.mark.parametrize('task,signum', CASES)
def test_interrupted_run_resumes_to_identical_weights_and_metrics(
        task, signum, reference, toy_data, tmp_path):
    spec = TASKS[task]
    code, log = _run(_train_cmd(task, toy_data, tmp_path), stop_at=spec['kill_at'],
                     signum=signum)
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL, log[-3000:]
    else:  # stopped cleanly after the current iteration, with the way back in the log
        assert code == 128 + signum, log[-3000:]
        assert f'received {signum.name}: stopped after iteration' in log, log[-3000:]
        assert f'Continue with: tools/train.py {spec["config"]} --work-dir {tmp_path} ' \
               f'--resume' in log
        if task == 'seg':  # the iteration loop saved where it stopped
            step = _stopped_after(task, signum, log)
            assert f'holds iteration {step}' in log and osp.isfile(tmp_path / f'iter_{step}.pth')
    assert not osp.exists(tmp_path / spec['final'])
    step = _stopped_after(task, signum, log)
    # the work dir lock (backbones/engine/lock.py) went with a clean stop; a SIGKILL leaves
    # it behind, stale, and the resumed run takes it over, saying so
    assert osp.exists(tmp_path / 'run.lock') == (signum == signal.SIGKILL)

    code, log = _run(_train_cmd(task, toy_data, tmp_path, '--resume'))
    assert code == 0, log[-4000:]
    assert ('removed a stale lock' in log) == (signum == signal.SIGKILL)
    assert not osp.exists(tmp_path / 'run.lock')
    assert_resumed_at(log, task, step)
    # The restart-from-scratch control: the reference is such a run, and ends with the
    # same weights (training is deterministic), but the check above rejects its log.
    with pytest.raises(AssertionError):
        assert_resumed_at(reference[f'{task}-log'], task, step)

    ours, ref = _weights(tmp_path / spec['final']), _weights(reference[task] / spec['final'])
    diff, key = _max_diff(ours, ref)
    print(f'{task} {signum.name}: resumed after iteration {step}; largest weight difference '
          f'{diff:.3g} ({key})')
    assert diff <= TOL, f'{key} differs by {diff:.3g} from the uninterrupted run'
    # every iteration after the resume has the loss the uninterrupted run had there
    expected = dict(train_losses(reference[f'{task}-log']))
    resumed = train_losses(log)
    assert resumed == [(s, expected[s]) for s, _ in resumed]
    assert len(resumed) >= 2 and len({loss for _, loss in resumed}) > 1  # not a constant
    assert _final_metrics(tmp_path) == pytest.approx(_final_metrics(reference[task]), abs=TOL)


@pytest.mark.slow
def test_reference_runs_move_weights_far_beyond_tolerance(reference):
    """Guards the test above: were the weights nearly static, any resume would 'match'."""
    first = _weights(reference['seg'] / 'iter_4.pth')
    last = _weights(reference['seg'] / 'iter_8.pth')
    assert _max_diff(first, last)[0] > 1e3 * TOL


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_resume_without_random_states_differs(task, reference, toy_data, tmp_path):
    """Negative control, for both loop types: with mmengine's plain re-seeding (no
    RandomStateHook) the resumed run draws other augmentations / proposals / drop-paths and
    ends elsewhere, so the exact-resume test can fail."""
    spec = TASKS[task]
    no_rng = ['custom_hooks.0.type=NonFiniteLossHook']  # in place of RandomStateHook
    code, log = _run(_train_cmd(task, toy_data, tmp_path, options=no_rng),
                     stop_at=spec['kill_at'], signum=signal.SIGKILL)
    assert code == -signal.SIGKILL, log[-3000:]
    assert 'RandomStateHook' not in log
    code, log = _run(_train_cmd(task, toy_data, tmp_path, '--resume', options=no_rng))
    assert code == 0, log[-4000:]
    assert_resumed_at(log, task, 4)
    diff, key = _max_diff(_weights(tmp_path / spec['final']),
                          _weights(reference[task] / spec['final']))
    print(f'{task} without RandomStateHook: {key} differs by {diff:.3g}')
    assert diff > TOL


# ---------------------------------------------------------------------------------------
# non-finite losses
# ---------------------------------------------------------------------------------------
def test_nan_loss_hook_names_iteration_and_term():
    from types import SimpleNamespace

    from backbones.engine.hooks import NonFiniteLossError, NonFiniteLossHook
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(iter=6, epoch=1, optim_wrapper=SimpleNamespace())  # fp32
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, outputs={'loss_cls': torch.tensor(0.7)})
    with pytest.raises(NonFiniteLossError, match=r'iteration 7 .*loss_mask=nan.*loss_bbox=inf'):
        hook.after_train_iter(runner, 0, outputs={'loss_cls': torch.tensor(0.7),
                                                  'loss_mask': torch.tensor(float('nan')),
                                                  'loss_bbox': torch.tensor(float('inf'))})


@pytest.fixture
def cpu_amp_wrapper(monkeypatch):
    """mmengine's own AmpOptimWrapper, on a CPU GradScaler (the wrapper asserts CUDA and
    builds torch.cuda.amp.GradScaler, which is disabled without CUDA): its real step and
    dynamic loss-scale logic, which the hook watches."""
    import functools

    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp, 'GradScaler', functools.partial(torch.amp.GradScaler, 'cpu'))

    def make(accumulative_counts=1):
        model = torch.nn.Linear(4, 1)
        wrapper = amp.AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                      accumulative_counts=accumulative_counts)
        wrapper.initialize_count_status(model, 0, 100)
        assert wrapper.loss_scaler.is_enabled() and wrapper.loss_scaler.get_scale() == 2 ** 16
        return model, wrapper
    return make


def _amp_steps(hook, model, wrapper, losses, start=0):
    """One training iteration per loss factor (nan = a non-finite loss) through the wrapper
    and the hook, as mmengine runs them."""
    from types import SimpleNamespace
    for i, factor in enumerate(losses, start):
        loss = model(torch.ones(2, 4)).sum() * factor
        wrapper.update_params(loss)
        hook.after_train_iter(SimpleNamespace(iter=i, epoch=0), i, outputs={'loss': loss})


def test_amp_skipped_steps_are_counted_and_stop_the_run_when_they_persist(cpu_amp_wrapper):
    from types import SimpleNamespace

    from backbones.engine.hooks import NonFiniteLossError, NonFiniteLossHook
    model, wrapper = cpu_amp_wrapper()
    hook = NonFiniteLossHook(amp_patience=4)
    hook.before_train(SimpleNamespace(optim_wrapper=wrapper))
    nan = float('nan')
    # a calibration-like burst of 3 skips, then good steps: counted, the streak resets
    _amp_steps(hook, model, wrapper, [1.0, nan, nan, nan, 1.0, 1.0])
    assert (hook.skipped_total, hook.skipped_in_a_row) == (3, 0)
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 13
    weights = model.weight.detach().clone()
    with pytest.raises(NonFiniteLossError) as err:
        _amp_steps(hook, model, wrapper, [nan] * 4, start=6)
    assert torch.equal(model.weight, weights)  # the skipped steps changed nothing
    assert 'AMP: 4 optimizer steps in a row were skipped by the dynamic loss scale ' \
           '(iterations 7-10, loss scale now 512)' in str(err.value)
    assert 'not changed since iteration 6' in str(err.value) and 'loss=nan' in str(err.value)
    assert hook.skipped_total == 7


def test_amp_gradient_accumulation_steps_are_not_counted_as_good(cpu_amp_wrapper):
    """With accumulative_counts=2 only every second iteration steps; the ones between
    neither skip nor end a streak."""
    from types import SimpleNamespace

    from backbones.engine.hooks import NonFiniteLossError, NonFiniteLossHook
    model, wrapper = cpu_amp_wrapper(accumulative_counts=2)
    hook = NonFiniteLossHook(amp_patience=2)
    hook.before_train(SimpleNamespace(optim_wrapper=wrapper))
    with pytest.raises(NonFiniteLossError, match='2 optimizer steps in a row'):
        _amp_steps(hook, model, wrapper, [float('nan')] * 4)


@pytest.fixture
def terminal_sigint():
    """SIGINT as Python sets it up in a terminal: a run started in the background (nohup,
    `cmd &`, some CI runners) inherits SIGINT ignored, which would hide what these test."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_stop_signals_second_ctrl_c_interrupts_at_once(terminal_sigint):
    from backbones.engine.hooks import STOP_SIGNALS
    STOP_SIGNALS.install([signal.SIGINT])
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert STOP_SIGNALS.received == signal.SIGINT  # first: remembered, no exception
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        STOP_SIGNALS.uninstall()


class _SlowData(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        time.sleep(0.2)
        return i


def _ctrl_c_to_workers(install):
    """Batches of a 2-worker loader whose workers get a Ctrl-C mid-epoch (as a terminal
    sends it to every process of the job); an exception if the loader broke."""
    from backbones.engine.hooks import STOP_SIGNALS
    if install:
        STOP_SIGNALS.install([signal.SIGINT])
    try:
        batches = iter(torch.utils.data.DataLoader(_SlowData(), num_workers=2))
        time.sleep(0.3)
        for worker in batches._workers:  # private torch attribute: test only
            os.kill(worker.pid, signal.SIGINT)
        return [int(b) for b in batches]
    finally:
        STOP_SIGNALS.uninstall()


def test_data_loader_workers_survive_ctrl_c_when_installed_before_they_fork(terminal_sigint):
    """tools/train.py installs the stop handler before the Runner builds its loaders
    (an iteration loop forks its workers then, before any hook runs); the control shows
    that without it the same Ctrl-C breaks the loader."""
    assert _ctrl_c_to_workers(install=True) == list(range(6))
    with pytest.raises(Exception):  # noqa: B017 - torch raises one of several errors here
        _ctrl_c_to_workers(install=False)


def test_train_py_installs_the_stop_handler_before_the_runner_builds_loaders(
        monkeypatch, toy_data, tmp_path):
    """An iteration loop forks its loader workers while the Runner is built, before any
    hook runs: the handler must be in place by then (and gone after the run)."""
    from mmengine.runner import Runner

    from backbones.engine.hooks import STOP_SIGNALS
    before, seen = signal.getsignal(signal.SIGINT), {}

    class Built(Exception):
        pass

    def from_cfg(cfg):
        seen['SIGINT'] = signal.getsignal(signal.SIGINT)
        seen['SIGTERM'] = signal.getsignal(signal.SIGTERM)
        raise Built
    monkeypatch.setattr(Runner, 'from_cfg', staticmethod(from_cfg))
    opts = toy_options(SEG, toy_data['ade'], scale=128) + ['model.backbone.init_cfg=None']
    with pytest.raises(Built):
        train.main([SEG, '--work-dir', str(tmp_path / 'w'), '--no-data-check',
                    '--cfg-options', *opts])
    assert seen == {'SIGINT': STOP_SIGNALS._on_signal, 'SIGTERM': STOP_SIGNALS._on_signal}
    assert signal.getsignal(signal.SIGINT) == before


@pytest.mark.parametrize('config', [DET, SEG], ids=['det', 'seg'])
def test_bases_save_checkpoints_atomically_and_use_the_reliability_hooks(config, tmp_path):
    """Deleting the atomic backend (or a hook) from a base would otherwise leave every
    other test green: the SIGKILL tests cannot see a non-atomic write at the end of a run."""
    from mmengine.config import Config
    from mmengine.fileio import get_file_backend

    from backbones.engine.fileio import AtomicLocalBackend
    cfg = Config.fromfile(config)
    hook = cfg.default_hooks.checkpoint
    assert hook.backend_args == {'backend': 'atomic_local'}
    assert type(get_file_backend(str(tmp_path), backend_args=hook.backend_args)) \
        is AtomicLocalBackend
    assert [h['type'] for h in cfg.custom_hooks] == ['RandomStateHook', 'NonFiniteLossHook',
                                                     'GracefulStopHook']
    assert cfg.optim_wrapper.loss_scale == 'dynamic'  # what NonFiniteLossHook watches


@pytest.mark.slow
def test_nan_loss_stops_fp32_training_before_saving(toy_data, tmp_path):
    # A NaN loss weight turns the auxiliary loss into NaN from the first iteration.
    code, log = _run(_train_cmd('seg', toy_data, tmp_path, options=[
        'model.auxiliary_head.loss_decode.loss_weight=nan', 'default_hooks.checkpoint.interval=1']))
    assert code == 1, log[-3000:]
    assert 'non-finite loss at iteration 1' in log and 'aux.loss_ce=nan' in log
    assert 'decode.loss_ce' in log.split('Finite terms:')[-1]
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.pth')]


# ---------------------------------------------------------------------------------------
# checkpoint contents (bad input of every kind: tests/test_preflight.py)
# ---------------------------------------------------------------------------------------
def _mambaout_state(arch):
    from backbones.models.mambaout import MambaOut
    return MambaOut(arch=arch, out_indices=(0, 1, 2, 3)).state_dict()


def test_official_and_own_checkpoints_pass_the_safety_check(tmp_path):
    """The same check accepts what must load: an official-format (timm key layout)
    MambaOut checkpoint and an mmengine checkpoint with its message hub and numpy state."""
    from mmengine.logging import MessageHub

    from backbones.engine.checkpoint import check_checkpoint_file
    from backbones.engine.hooks import capture_random_states
    hub = MessageHub.get_instance('reliability-test')
    hub.update_scalar('train/loss', 1.5)
    own = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': _mambaout_state('femto'), 'message_hub': hub.state_dict(),
                'meta': {'epoch': 3, 'seed': 0}, 'random_states': capture_random_states()},
               own)
    official = tmp_path / 'mambaout_femto.pth'
    torch.save({'model': _mambaout_state('femto'), 'epoch': 299}, official)
    for path in (own, official):
        check_checkpoint_file(path)
        torch.load(path, weights_only=True)


# ---------------------------------------------------------------------------------------
# checkpoint files: atomic writes, and --resume after a crash while they were written
# ---------------------------------------------------------------------------------------
WRITER = """
import sys, torch
import backbones  # registers the atomic_local file backend
from mmengine.runner.checkpoint import save_checkpoint
step = 0
while True:
    ckpt = {{'w': torch.full((6_000_000,), float(step)), 'step': step}}
    save_checkpoint(ckpt, {path!r}, backend_args=dict(backend='atomic_local'))
    print(step, flush=True)
    step += 1
"""


@pytest.mark.slow
def test_kill_during_checkpoint_write_never_leaves_a_truncated_file(tmp_path):
    path = str(tmp_path / 'iter_1.pth')
    rng = random.Random(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, '-c', WRITER.format(repo=REPO, path=path)],
                                stdout=subprocess.PIPE, text=True, env=_env())
        proc.stdout.readline()  # one checkpoint is complete
        time.sleep(rng.uniform(0.0, 0.4))  # then die somewhere in the next ones
        proc.kill()
        proc.wait()
        ckpt = torch.load(path, weights_only=True)
        assert ckpt['w'].numel() == 6_000_000
        assert bool((ckpt['w'] == ckpt['step']).all())


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from backbones.engine.fileio import AtomicLocalBackend
    path = str(tmp_path / 'epoch_1.pth')
    backend = AtomicLocalBackend()
    backend.put(b'old', path)

    def dying_fsync(fd):
        raise KeyboardInterrupt  # stands in for a signal arriving mid-write
    monkeypatch.setattr(os, 'fsync', dying_fsync)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'new' * 1000, path)
    assert open(path, 'rb').read() == b'old'
    assert os.listdir(tmp_path) == ['epoch_1.pth']


def test_resume_finds_the_newest_complete_checkpoint(tmp_path):
    """mmengine writes last_checkpoint in place after the checkpoint: a crash there leaves
    it empty; --resume then takes the newest epoch_N / iter_N file and says so."""
    for name in ('epoch_1.pth', 'epoch_2.pth', 'epoch_10.pth'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    said = []
    (tmp_path / 'last_checkpoint').write_text('')
    assert find_resume_checkpoint(str(tmp_path), log=said.append) == \
        str(tmp_path / 'epoch_10.pth')
    assert 'unusable' in said[0]
    os.remove(tmp_path / 'last_checkpoint')
    assert find_resume_checkpoint(str(tmp_path), log=said.append) == \
        str(tmp_path / 'epoch_10.pth')
    assert find_resume_checkpoint(str(tmp_path / 'empty')) is None
    (tmp_path / '.epoch_11.pth.x1y2.part').write_bytes(b'half')
    assert remove_partial_writes(str(tmp_path), log=said.append) == ['.epoch_11.pth.x1y2.part']
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'epoch_10.pth', 'epoch_2.pth']


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    from backbones.engine.hooks import capture_random_states, restore_random_states
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    torch.save({'random_states': capture_random_states()}, tmp_path / 'c.pth')
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_random_states(torch.load(tmp_path / 'c.pth', weights_only=True)['random_states'])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
