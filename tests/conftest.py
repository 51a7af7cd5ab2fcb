"""Shared fixtures: toy datasets, running the suite's tools as a user would."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
TEST_CONFIGS = osp.join(REPO, 'tests', 'configs')


def load_tool(name):
    """Import ``tools/<name>.py`` as module ``tools_<name>`` (for in-process ``main(argv)``
    calls), without putting tools/ on sys.path, where its test.py would shadow Python's own
    ``test`` package."""
    module_name = f'tools_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, osp.join(TOOLS, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


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


def call_tool(name, *args, check=True):
    """Run ``tools/<name>.py``'s ``main(argv)`` in this process (no interpreter start-up and
    package import per call, ~10-30 s on the CI machine kind), with its stdout and stderr
    captured; returns a CompletedProcess like :func:`run_tool`. One test per tool still runs
    the command line itself in a subprocess."""
    import contextlib
    import io
    argv = [str(a) for a in args]
    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            load_tool(name).main(argv)
        except SystemExit as err:  # sys.exit(message) prints the message, exit status 1
            code = err.code if isinstance(err.code, int) else (err.code is not None)
            if isinstance(err.code, str):
                print(err.code, file=out)
    if check and code:
        pytest.fail(f'tools/{name}.py {" ".join(argv)} exited {code}:\n{out.getvalue()[-6000:]}')
    return subprocess.CompletedProcess([name, *argv], int(code), out.getvalue())


def toy_options(config, data_root, scale=160, batch_size=2):
    """--cfg-options that point ``config`` at the toy data (backbones/datasets/toy_options.py)."""
    from mmengine.config import Config

    from backbones.datasets.toy_options import TOY_RCNN_SAMPLES, toy_cfg_options
    return toy_cfg_options(Config.fromfile(config), data_root, scale=scale,
                           batch_size=batch_size, rcnn_samples=TOY_RCNN_SAMPLES)


def randomize_(model, seed=0):
    """Give every parameter a distinct value, so a swapped or missing mapping shows."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


# Where the official repositories' pinned snapshots are looked for (git directories named
# owner+name/repo, as this workplace's fetch tool leaves them); never downloaded by a test.
RELEASE_MIRRORS = [p for p in (os.environ.get('BENCH_RELEASE_MIRROR'), '/work/.mirror') if p]


def release_source(repo, commit, dest, paths=()):
    """The official repository ``repo`` ('owner/name') at ``commit``, extracted under ``dest``
    from a local snapshot; skips (naming what to fetch) when no snapshot holds that commit.
    ``paths``: extract only these (a snapshot may lack large blobs, e.g. images, that a
    whole-tree archive would need). Used by the slow equivalence tests against each family's
    release; no network access."""
    out = osp.join(str(dest), repo.replace('/', '+'))
    if osp.isdir(out):
        return out
    for root in RELEASE_MIRRORS:
        for git_dir in (osp.join(root, repo.replace('/', '+'), 'repo'),
                        osp.join(root, repo.replace('/', '+'), 'repo', '.git')):
            if not osp.isfile(osp.join(git_dir, 'HEAD')):
                continue
            probe = subprocess.run(['git', '--git-dir', git_dir, 'cat-file', '-e',
                                    f'{commit}^{{commit}}'], capture_output=True)
            if probe.returncode:
                continue
            os.makedirs(out)
            archive = subprocess.run(['git', '--git-dir', git_dir, 'archive', commit,
                                      *paths],
                                     capture_output=True, check=True).stdout
            subprocess.run(['tar', '-x', '-C', out], input=archive, check=True)
            return out
    pytest.skip(f'official source {repo}@{commit} not found under {RELEASE_MIRRORS} '
                f'(set BENCH_RELEASE_MIRROR to a folder holding {repo.replace("/", "+")}/repo, '
                f'a git clone that contains that commit)')


@pytest.fixture
def scan_dtypes(monkeypatch):
    """(decay dtype, state dtype) of every call of the torch backend's inner scan."""
    import backbones.ops.scan_torch as ss
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
    from backbones.datasets.toy_data import make_toy_data
    return make_toy_data(str(tmp_path_factory.mktemp('toy')), num_train=8, num_val=4, seed=0)


WEIGHT_FILES = ('.pth', '.pth.tar', '.ckpt', '.safetensors', '.bin')  # .pth.tar: SG-Former's


def _remove_weight_files(root):
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(WEIGHT_FILES):
                os.remove(osp.join(folder, name))


@pytest.fixture(autouse=True)
def _drop_checkpoints(request):
    """Delete the checkpoints a test wrote under its tmp_path once it is done: a full-size
    detector checkpoint is ~1.3 GB and pytest keeps the last three runs' folders."""
    if 'tmp_path' not in request.fixturenames:
        yield
        return
    root = request.getfixturevalue('tmp_path')  # set up first, so torn down after this
    yield
    _remove_weight_files(root)


@pytest.fixture(scope='session', autouse=True)
def _drop_shared_checkpoints(tmp_path_factory):
    """The same for the folders that module and session fixtures share (resume references,
    bad-input checkpoints), at the end of the run."""
    yield
    _remove_weight_files(tmp_path_factory.getbasetemp())
