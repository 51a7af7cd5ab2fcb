"""Shared fixtures: toy datasets, running the suite's tools as a user would."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
TEST_CONFIGS = osp.join(REPO, 'tests', 'configs')
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def run_tool(*args, timeout=900, env=None, check=True, cwd=REPO):
    """Run a tools/ script (or shell script) in a subprocess; fail with its output tail."""
    script = args[0]
    cmd = (['bash', script] if script.endswith('.sh') else [sys.executable, script]) + \
        [str(a) for a in args[1:]]
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    full_env.setdefault('PYTHON', sys.executable)
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(cmd)} exited {proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc


def toy_options(config, data_root, scale=160, batch_size=2):
    """--cfg-options that point ``config`` at the toy data (see backbones/toy.py)."""
    from mmengine.config import Config

    from backbones.toy import toy_cfg_options
    return toy_cfg_options(Config.fromfile(config), data_root, scale=scale, batch_size=batch_size)


def randomize_(model, seed=0):
    """Give every parameter a distinct value, so a swapped or missing mapping shows."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture
def scan_dtypes(monkeypatch):
    """(decay dtype, state dtype) of every call of the torch backend's inner scan."""
    import backbones.selective_scan as ss
    seen, real = [], ss._scan_

    def spy(a, h, *args, **kwargs):
        seen.append((a.dtype, h.dtype))
        return real(a, h, *args, **kwargs)
    monkeypatch.setattr(ss, '_scan_', spy)
    return seen


@pytest.fixture(scope='module')
def one_intra_op_thread():
    """Run a module's many mid-sized ops on one thread: on a shared 2-core machine an
    OpenMP barrier waits for a descheduled second thread on every op (20-50x slower)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def toy_data(tmp_path_factory):
    """Small toy COCO + ADE20K sets (8 train / 4 val images each)."""
    sys.path.insert(0, TOOLS)
    from make_toy_data import make_toy_data
    return make_toy_data(str(tmp_path_factory.mktemp('toy')), num_train=8, num_val=4, seed=0)
