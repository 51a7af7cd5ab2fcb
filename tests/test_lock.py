"""One run per work dir (backbones/engine/lock.py): a second run is refused naming the
holder's pid and start time, the lock goes with its run on every exit path, a SIGKILLed
holder's lock is taken over (by pid and start time), and a multi-process run takes it once
without hanging. The SIGTERM / Ctrl-C / SIGKILL paths of a real training run are asserted in
tests/test_reliability.py's interrupted runs."""
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, TOOLS, load_tool, toy_options

train = load_tool('train')
test_tool = load_tool('test')

SEG = osp.join(REPO, 'seg_configs', 'upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py')

# lock.py is plain Python: loaded by path, so the holder starts in well under a second
HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('lock', sys.argv[2])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
lock.WorkDirLock(sys.argv[1], 'a long run').acquire()
print('HELD', flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding tmp_path/work's lock."""
    work = tmp_path / 'work'
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, str(work),
                             osp.join(REPO, 'backbones', 'engine', 'lock.py')],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == 'HELD'
    yield proc, work
    proc.kill()
    proc.wait()


def _refused(tool, argv):
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    return str(exc.value.code)


def _listing(folder):
    return sorted(os.listdir(folder))


def test_second_run_is_refused_naming_the_holder(holder, toy_data):
    from backbones.engine.lock import LOCK_NAME, read_lock
    proc, work = holder
    before = _listing(work)
    held = read_lock(str(work))
    opts = toy_options(SEG, toy_data['ade'], scale=128)
    start = time.perf_counter()
    message = _refused(train, [SEG, '--work-dir', str(work), '--cfg-options', *opts])
    assert time.perf_counter() - start < 30  # before the pre-flight
    assert message.startswith(f'error: work dir {work} is in use by another run: pid '
                              f'{proc.pid} on {socket.gethostname()}, started {held["started"]}')
    assert f'kill -TERM {proc.pid}' in message and 'use another --work-dir' in message
    ckpt = work / 'epoch_1.pth'
    ckpt.write_bytes(b'x')
    message = _refused(test_tool, [SEG, str(ckpt), '--work-dir', str(work)])
    assert f'pid {proc.pid}' in message
    assert _listing(work) == sorted(before + ['epoch_1.pth'])  # nothing else written
    assert read_lock(str(work)) == held and (work / LOCK_NAME).exists()


def test_lock_is_released_on_every_exit_path(tmp_path, monkeypatch, toy_data):
    """Normal end and exception (in process); SystemExit is how the clean SIGTERM / Ctrl-C
    stops leave, and a second Ctrl-C is a KeyboardInterrupt: the same ``with``."""
    from mmengine.runner import Runner

    from backbones.engine.lock import WorkDirLock, read_lock
    for exc in (None, RuntimeError('boom'), SystemExit(143), KeyboardInterrupt()):
        work = str(tmp_path / f'w{type(exc).__name__}')
        with pytest.raises(type(exc)) if exc else _nothing():
            with WorkDirLock(work, 'test'):
                assert read_lock(work)['pid'] == os.getpid()
                if exc:
                    raise exc
        assert read_lock(work) is None, type(exc).__name__

    class Built(Exception):
        pass

    def from_cfg(cfg):
        assert read_lock(cfg.work_dir)['tool'] == 'tools/train.py'  # held while it runs
        raise Built
    monkeypatch.setattr(Runner, 'from_cfg', staticmethod(from_cfg))
    work = tmp_path / 'tool'
    opts = toy_options(SEG, toy_data['ade'], scale=128) + ['model.backbone.init_cfg=None']
    with pytest.raises(Built):
        train.main([SEG, '--work-dir', str(work), '--no-data-check', '--cfg-options', *opts])
    assert read_lock(str(work)) is None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over(holder, capsys):
    from backbones.engine.lock import WorkDirLock, read_lock
    proc, work = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stale = read_lock(str(work))
    assert stale['pid'] == proc.pid  # SIGKILL ran no clean-up
    with WorkDirLock(str(work), 'next run', log=print):
        assert read_lock(str(work))['pid'] == os.getpid()
    assert f'removed a stale lock in {work}: pid {proc.pid}' in capsys.readouterr().out


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path, capsys):
    """The recorded pid runs, but it is another process (started at another time)."""
    from backbones.engine.lock import LOCK_NAME, WorkDirLock, process_start, read_lock
    work = tmp_path / 'work'
    work.mkdir()
    mine = process_start(os.getpid())
    (work / LOCK_NAME).write_text(json.dumps(dict(
        pid=os.getppid(), host=socket.gethostname(), start_ticks=process_start(os.getppid()) - 1,
        started='2026-01-01T00:00:00+00:00', tool='tools/train.py', command='old')))
    with WorkDirLock(str(work), 'new'):
        assert read_lock(str(work))['start_ticks'] == mine
    assert 'removed a stale lock' in capsys.readouterr().out


def test_a_holder_on_another_host_is_never_guessed_stale(tmp_path):
    from backbones.engine.lock import LOCK_NAME, WorkDirLock, WorkDirLocked
    work = tmp_path / 'work'
    work.mkdir()
    (work / LOCK_NAME).write_text(json.dumps(dict(
        pid=12345, host='node-07', start_ticks=1, started='2026-01-01T00:00:00+00:00',
        tool='tools/train.py', command='python tools/train.py X')))
    with pytest.raises(WorkDirLocked) as err:
        WorkDirLock(str(work)).acquire()
    assert 'pid 12345 on node-07' in str(err.value)
    assert f'delete {work / LOCK_NAME} and start again' in str(err.value)


@pytest.mark.slow
def test_a_distributed_run_is_refused_once_and_does_not_hang(holder, toy_data):
    """tools/dist_train.sh, 2 CPU processes (gloo): rank 0 finds the lock and stops; torchrun
    ends the other rank instead of leaving it waiting for rank 0 (the run that takes the lock
    on rank 0 only: tests/test_configs.py's dist_train.sh runs, which rank 1 would otherwise
    fail)."""
    proc, work = holder
    opts = toy_options(SEG, toy_data['ade'], scale=128)
    env = dict(os.environ, PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    start = time.perf_counter()
    out = subprocess.run(['bash', osp.join(TOOLS, 'dist_train.sh'), SEG, '2', '--work-dir',
                          str(work), '--cfg-options', *opts], cwd=REPO, env=env, timeout=240,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert out.returncode != 0, out.stdout[-3000:]
    assert out.stdout.count(f'is in use by another run: pid {proc.pid}') == 1, out.stdout[-3000:]
    print(f'refused in {time.perf_counter() - start:.1f} s')
