"""Issue 8: interrupted runs resume exactly, bad input stops before anything is written,
checkpoints cannot run code, NaN losses stop fp32 training, checkpoint writes are atomic."""
import json
import os
import os.path as osp
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import REPO, TOOLS, toy_options

sys.path.insert(0, TOOLS)
import train  # noqa: E402
from _preflight import find_resume_checkpoint, remove_partial_writes  # noqa: E402

DET = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco.py')
SEG = osp.join(REPO, 'seg_configs', 'upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py')
TOL = 1e-6

# Small, fast, and with a learning rate that moves weights well beyond TOL per step, so
# any difference in the random numbers drawn after a resume shows in the final weights.
COMMON = ['randomness.seed=0', 'model.backbone.init_cfg=None', 'optim_wrapper.optimizer.lr=1e-3',
          'param_scheduler.0.start_factor=1.0', 'default_hooks.logger.interval=1']
TASKS = {
    'det': dict(config=DET, data='coco', final='epoch_2.pth',
                options=['train_cfg.max_epochs=2'], kill_at='Epoch(train) [2][2/4]'),
    'seg': dict(config=SEG, data='ade', final='iter_8.pth',
                options=['train_cfg.max_iters=8', 'train_cfg.val_interval=8',
                         'default_hooks.checkpoint.interval=4'],
                kill_at='Iter(train) [6/8]'),
}


def _env():
    return dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def _train_cmd(task, toy_data, work_dir, *extra, options=()):
    spec = TASKS[task]
    opts = toy_options(spec['config'], toy_data[spec['data']], scale=128)
    return [sys.executable, osp.join(TOOLS, 'train.py'), spec['config'], '--work-dir',
            str(work_dir), *extra, '--cfg-options', *opts, *COMMON, *spec['options'], *options]


def _run(cmd, stop_at=None, signum=None, timeout=900):
    """Run ``cmd``; with ``stop_at``, send ``signum`` once that text appears in its log."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    if stop_at:
        for line in proc.stdout:
            lines.append(line)
            if stop_at in line:
                proc.send_signal(signum)
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


@pytest.fixture(scope='module')
def reference(toy_data, tmp_path_factory):
    """One uninterrupted run per task (the numbers a resumed run must reproduce)."""
    out = {}
    for task, spec in TASKS.items():
        work_dir = tmp_path_factory.mktemp(f'ref-{task}')
        code, log = _run(_train_cmd(task, toy_data, work_dir))
        assert code == 0, log[-4000:]
        out[task] = work_dir
    return out


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGKILL, signal.SIGTERM], ids=['SIGKILL', 'SIGTERM'])
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_interrupted_run_resumes_to_identical_weights_and_metrics(
        task, signum, reference, toy_data, tmp_path):
    spec = TASKS[task]
    code, log = _run(_train_cmd(task, toy_data, tmp_path), stop_at=spec['kill_at'],
                     signum=signum)
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL, log[-3000:]
    else:  # stopped cleanly after the current iteration, with the way back in the log
        assert code == 128 + signal.SIGTERM, log[-3000:]
        assert 'received SIGTERM: stopped after iteration' in log and '--resume' in log
        if task == 'seg':  # the iteration loop saved where it stopped
            assert 'holds iteration' in log
    assert not osp.exists(tmp_path / spec['final'])

    code, log = _run(_train_cmd(task, toy_data, tmp_path, '--resume'))
    assert code == 0, log[-4000:]
    assert 'resumed' in log.lower()

    ours, ref = _weights(tmp_path / spec['final']), _weights(reference[task] / spec['final'])
    diff, key = _max_diff(ours, ref)
    print(f'{task} {signal.Signals(signum).name}: largest difference {diff:.3g} ({key})')
    assert diff <= TOL, f'{key} differs by {diff:.3g} from the uninterrupted run'
    assert _final_metrics(tmp_path) == pytest.approx(_final_metrics(reference[task]), abs=TOL)


@pytest.mark.slow
def test_reference_runs_move_weights_far_beyond_tolerance(reference):
    """Guards the test above: were the weights nearly static, any resume would 'match'."""
    first = _weights(reference['seg'] / 'iter_4.pth')
    last = _weights(reference['seg'] / 'iter_8.pth')
    assert _max_diff(first, last)[0] > 1e3 * TOL


@pytest.mark.slow
def test_resume_without_random_states_differs(reference, toy_data, tmp_path):
    """Negative control: with mmengine's plain re-seeding (no RandomStateHook) the resumed
    detector draws other proposals and ends elsewhere, so the exact-resume test can fail."""
    no_rng = ['custom_hooks.0.type=NonFiniteLossHook']  # in place of RandomStateHook
    code, log = _run(_train_cmd('det', toy_data, tmp_path, options=no_rng),
                     stop_at=TASKS['det']['kill_at'], signum=signal.SIGKILL)
    assert code == -signal.SIGKILL, log[-3000:]
    assert 'RandomStateHook' not in log
    code, log = _run(_train_cmd('det', toy_data, tmp_path, '--resume', options=no_rng))
    assert code == 0, log[-4000:]
    diff, key = _max_diff(_weights(tmp_path / 'epoch_2.pth'),
                          _weights(reference['det'] / 'epoch_2.pth'))
    print(f'without RandomStateHook: {key} differs by {diff:.3g}')
    assert diff > TOL


# ---------------------------------------------------------------------------------------
# non-finite losses
# ---------------------------------------------------------------------------------------
def test_nan_loss_hook_names_iteration_and_term():
    from types import SimpleNamespace

    from backbones.hooks import NonFiniteLossError, NonFiniteLossHook
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(iter=6, epoch=1)
    hook.after_train_iter(runner, 0, outputs={'loss_cls': torch.tensor(0.7)})
    with pytest.raises(NonFiniteLossError, match=r'iteration 7 .*loss_mask=nan.*loss_bbox=inf'):
        hook.after_train_iter(runner, 0, outputs={'loss_cls': torch.tensor(0.7),
                                                  'loss_mask': torch.tensor(float('nan')),
                                                  'loss_bbox': torch.tensor(float('inf'))})
    hook.active = False  # AMP: the dynamic loss scale skips such steps instead
    hook.after_train_iter(runner, 0, outputs={'loss_mask': torch.tensor(float('nan'))})


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
# bad input: a clear error before the Runner exists, and no work dir
# ---------------------------------------------------------------------------------------
class Evil:
    """Unpickling this runs a command: a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _mambaout_state(arch):
    from backbones.mambaout import MambaOut
    return MambaOut(arch=arch, out_indices=(0, 1, 2, 3)).state_dict()


@pytest.fixture(scope='module')
def bad_inputs(toy_data, tmp_path_factory):
    """name -> (config, extra argv, --cfg-options, expected message)."""
    root = tmp_path_factory.mktemp('bad')
    ann = osp.join(toy_data['coco'], 'annotations', 'instances_train2017.json')

    def write(name, text):
        path = str(root / name)
        with open(path, 'w') as f:
            f.write(text)
        return path
    with open(ann) as f:
        valid = json.load(f)
    no_categories = write('no_categories.json', json.dumps(
        {k: v for k, v in valid.items() if k != 'categories'}))
    bad_ann = dict(valid, annotations=[dict(valid['annotations'][0], category_id=99)])
    dangling = write('dangling.json', json.dumps(bad_ann))
    garbage = write('garbage.json', '{"images": [')

    ade = str(root / 'ade')
    shutil.copytree(toy_data['ade'], ade)
    import cv2
    mask_dir = osp.join(ade, 'annotations', 'training')
    first = sorted(os.listdir(mask_dir))[0]
    mask = cv2.imread(osp.join(mask_dir, first), cv2.IMREAD_UNCHANGED)
    mask[:4, :4] = 200
    cv2.imwrite(osp.join(mask_dir, first), mask)

    marker = str(root / 'pwned')
    evil = str(root / 'evil.pth')
    torch.save({'state_dict': _mambaout_state('femto'), 'meta': Evil(marker)}, evil)
    tiny = str(root / 'mambaout_tiny.pth')
    torch.save({'model': _mambaout_state('tiny')}, tiny)
    from timm import create_model
    other = str(root / 'convnext_atto.pth')
    torch.save(create_model('convnext_atto').state_dict(), other)
    good = str(root / 'epoch_1.pth')
    torch.save({'state_dict': {}, 'meta': {'epoch': 1}}, good)
    truncated = str(root / 'truncated.pth')
    with open(good, 'rb') as src, open(truncated, 'wb') as dst:
        dst.write(src.read()[:-200])

    det, seg = DET, SEG
    ds = 'train_dataloader.dataset'
    return {
        'missing data root': (det, [], [f'{ds}.data_root=/nonexistent/coco/'],
                              'data root not found: /nonexistent/coco'),
        'missing annotation file': (det, [], [f'{ds}.ann_file=annotations/nope.json'],
                                    'annotation file not found'),
        'annotation without categories': (det, [], [f'{ds}.ann_file={no_categories}'],
                                          'not a COCO instances file: no list under categories'),
        'annotation with unknown category': (det, [], [f'{ds}.ann_file={dangling}'],
                                             'category_id 99, which no category defines'),
        'annotation not JSON': (det, [], [f'{ds}.ann_file={garbage}'], 'not a readable JSON'),
        'class names not in annotations': (det, [], [
            f'{ds}.metainfo.classes=(cat,dog,bird)', 'val_dataloader.dataset.metainfo.classes='
            '(cat,dog,bird)'], 'category names do not match the config'),
        'ADE20K label above 150': (seg, [], [f'{ds}.data_root={ade}/'], 'cannot take (raw '
                                   'labels must be 1..150 (0 = other, 255 = ignore)'),
        'pretrained of another size': (det, [], [
            f'model.backbone.init_cfg.checkpoint={tiny}'], 'shape mismatches'),
        'pretrained of another architecture': (det, [], [
            f'model.backbone.init_cfg.checkpoint={other}'], 'missing keys'),
        'malicious pretrained checkpoint': (det, [], [
            f'model.backbone.init_cfg.checkpoint={evil}'], 'could run arbitrary code'),
        'malicious resume checkpoint': (det, ['--resume', evil], [],
                                        'could run arbitrary code'),
        'truncated resume checkpoint': (det, ['--resume', truncated], [],
                                        'not a complete torch checkpoint'),
        'missing resume checkpoint': (det, ['--resume', str(root / 'nope.pth')], [],
                                      'checkpoint file not found'),
        'unknown backbone size': (det, [], ['model.backbone.arch=huge'], 'huge'),
        'unknown backbone argument': (det, [], ['model.backbone.depth_scale=2'],
                                      "unexpected keyword argument 'depth_scale'"),
        'missing config': (osp.join(REPO, 'det_configs', 'nope.py'), [], [],
                           'config file not found'),
        '__marker__': marker,
    }


BAD_CASES = ['missing data root', 'missing annotation file', 'annotation without categories',
             'annotation with unknown category', 'annotation not JSON',
             'class names not in annotations', 'ADE20K label above 150',
             'pretrained of another size', 'pretrained of another architecture',
             'malicious pretrained checkpoint', 'malicious resume checkpoint',
             'truncated resume checkpoint', 'missing resume checkpoint',
             'unknown backbone size', 'unknown backbone argument', 'missing config']


@pytest.mark.parametrize('case', BAD_CASES)
def test_bad_input_fails_before_anything_is_written(case, bad_inputs, toy_data, tmp_path):
    config, argv, overrides, expected = bad_inputs[case]
    task = 'seg' if config == SEG else 'det'
    spec = TASKS[task]
    opts = toy_options(spec['config'], toy_data[spec['data']], scale=128) \
        if osp.isfile(config) else []
    opts += ['model.backbone.init_cfg=None'] if not any('init_cfg' in o for o in overrides) \
        else []
    work_dir = tmp_path / 'work'
    digest = open(config, 'rb').read() if osp.isfile(config) else None
    with pytest.raises(SystemExit) as exc:
        train.main([config, '--work-dir', str(work_dir), *argv, '--cfg-options', *opts,
                    *overrides] if opts or overrides else [config, '--work-dir', str(work_dir)])
    message = str(exc.value.code)
    assert message.startswith('error: '), message
    assert expected in message, message
    assert not work_dir.exists(), 'the work dir was created before the error'
    assert not osp.exists(bad_inputs['__marker__']), 'pickled code ran'
    if digest is not None:
        assert open(config, 'rb').read() == digest


def test_official_and_own_checkpoints_pass_the_safety_check(tmp_path):
    """The same check accepts what must load: an official-format (timm key layout)
    MambaOut checkpoint and an mmengine checkpoint with its message hub and numpy state."""
    from mmengine.logging import MessageHub

    from backbones.checkpoint import check_checkpoint_file
    from backbones.hooks import capture_random_states
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
sys.path.insert(0, {repo!r})
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
    from backbones.checkpoint import AtomicLocalBackend
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
    from backbones.hooks import capture_random_states, restore_random_states
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    torch.save({'random_states': capture_random_states()}, tmp_path / 'c.pth')
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_random_states(torch.load(tmp_path / 'c.pth', weights_only=True)['random_states'])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.parametrize('case', ['malicious', 'truncated'])
def test_test_py_refuses_unsafe_checkpoint_before_writing(case, bad_inputs, toy_data, tmp_path):
    import importlib
    test_tool = importlib.import_module('test')
    assert osp.dirname(test_tool.__file__) == TOOLS
    ckpt = bad_inputs[f'{case} resume checkpoint'][1][1]
    work_dir = tmp_path / 'work'
    opts = toy_options(DET, toy_data['coco'], scale=128)
    with pytest.raises(SystemExit) as exc:
        test_tool.main([DET, ckpt, '--work-dir', str(work_dir), '--cfg-options', *opts])
    message = str(exc.value.code)
    assert message.startswith('error: ') and ('arbitrary code' in message
                                              or 'not a complete' in message), message
    assert not work_dir.exists()
    assert not osp.exists(bad_inputs['__marker__'])
