"""tools/gpu_check.sh in --dry-run mode: its plumbing, on a CPU machine.

Its first stage must run on a bare GPU machine: :func:`test_stage1_on_a_bare_machine` runs
it where nothing but torch, triton, timm (and what they depend on) and the tree can be
imported.
"""
import json
import os.path as osp
import shlex
import sys
import tarfile

import pytest
import torch

from conftest import TOOLS, load_tool, run_tool

SCRIPT = osp.join(TOOLS, 'gpu_check.sh')
CORE = ['stage1', 'wheels', 'env', 'tests', 'scan-v0-tiny', 'scan-v2-tiny', 'backbone']
CHEAP = {'env', 'toy'}  # what a dry run runs (stage1 too with --part stage1)
TRAIN = ['mmcv', 'toy', 'train-mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco',
         'train-mask-rcnn_vmamba-v2-t_fpn_8xb2-amp-1x_coco',
         'train-upernet_vmamba-v2-t_8xb2-amp-160k_ade20k-512x512']


def read_summary(out):
    with open(osp.join(out, 'summary.json')) as f:
        summary = json.load(f)
    return summary, {s['name']: s for s in summary['steps']}


def test_dry_run_with_every_step(tmp_path):
    wheels, out = tmp_path / 'wheels', tmp_path / 'out'
    wheels.mkdir()
    proc = run_tool(SCRIPT, '--dry-run', '--with-mmcv', '--wheels', wheels, '--out', out,
                    '--archive', tmp_path / 'out.tgz', timeout=300)
    summary, steps = read_summary(out)
    assert summary['dry_run'] is True and summary['part'] == 'all'
    assert list(steps) == CORE + TRAIN
    # the cheap steps ran, the GPU ones were only printed and recorded
    assert {n for n, s in steps.items() if s['status'] == 'ok'} == CHEAP
    assert all(s['status'] == 'dry-run' for n, s in steps.items() if n not in CHEAP)
    assert all(s['command'] in proc.stdout for s in steps.values())
    # offline, and without dependencies: mmengine asks for opencv-python, which the GPU
    # image has as opencv-python-headless
    assert f'--no-index --no-deps --find-links {wheels}' in steps['wheels']['command']
    for name in ('mmengine==0.10.7', 'addict', 'yapf', 'mmdet==3.3.0', 'mmsegmentation==1.2.2',
                 'terminaltables', 'prettytable'):
        assert name in steps['wheels']['command'].split()
    assert 'tests/test_scan_triton.py' in steps['tests']['command']
    assert all('--device cuda' in steps[n]['command'] for n in steps if n.startswith(
        ('scan', 'backbone', 'train')))
    assert 'FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0' in steps['mmcv']['command']
    with open(out / 'env.json') as f:
        env = json.load(f)
    assert {'torch', 'triton', 'triton_kernels', 'selective_scan_backends'} <= set(env)
    assert (out / 'logs' / 'env.log').exists()
    assert (out / 'toy' / 'coco').is_dir() and (out / 'benchmarks').is_dir()
    with tarfile.open(tmp_path / 'out.tgz') as tar:
        assert {'out/summary.json', 'out/env.json'} <= set(tar.getnames())


def test_benchmark_steps_parse_and_measure_the_issue_shapes(tmp_path):
    """Every benchmark step's command line is one tools/benchmark.py accepts, with the
    issue's inputs (items 5-6)."""
    out = tmp_path / 'out'
    run_tool(SCRIPT, '--dry-run', '--with-mmcv', '--out', out, timeout=300)
    _, steps = read_summary(out)
    parse = load_tool('benchmark').parse_args
    parsed = {}
    for name, s in steps.items():
        argv = shlex.split(s['command'])
        if 'tools/benchmark.py' in argv:
            parsed[name] = parse(argv[argv.index('tools/benchmark.py') + 1:])
    assert set(parsed) == {n for n in CORE + TRAIN if n.startswith(('scan', 'backbone',
                                                                   'train'))}
    for arch in ('v0-tiny', 'v2-tiny'):
        scan = parsed[f'scan-{arch}']
        assert scan.arch == arch and scan.input == [(800, 1344, 2), (512, 512, 2)]
        assert scan.stages == [1, 2, 3, 4] and scan.fused and scan.no_reference
    backbone = parsed['backbone']
    assert backbone.shapes == [(800, 1344, 2), (512, 512, 2)] and backbone.precision == 'fp16'
    det = parsed['train-mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco']
    assert det.synthetic == (800, 1333) and det.toy_scale == 800 and det.profile_steps
    assert det.cudnn == ['default', 'benchmark', 'off']
    seg = parsed['train-upernet_vmamba-v2-t_8xb2-amp-160k_ade20k-512x512']
    assert seg.synthetic == (512, 512) and seg.toy_scale == 512
    assert all(p.device == 'cuda' for p in parsed.values())
    # named apart from the committed CPU records, so both can sit in results/benchmarks/
    assert all(p.name.endswith('_cuda') for p in parsed.values())


@pytest.mark.parametrize('part, expected', [
    ('core', CORE), ('train', ['wheels'] + TRAIN)])
def test_dry_run_parts(tmp_path, part, expected):
    """Device commands of under 10 minutes each: --part core, --part train (--part stage1:
    :func:`test_stage1_on_a_bare_machine`)."""
    run_tool(SCRIPT, '--dry-run', '--with-mmcv', '--part', part, '--out', tmp_path / 'o',
             timeout=300)
    summary, steps = read_summary(tmp_path / 'o')
    assert summary['part'] == part and list(steps) == expected


def test_dry_run_mmcv_in_the_background(tmp_path):
    """--parallel-mmcv: the mmcv build overlaps the core steps, recorded in step order."""
    run_tool(SCRIPT, '--dry-run', '--with-mmcv', '--parallel-mmcv', '--out', tmp_path / 'o',
             timeout=300)
    _, steps = read_summary(tmp_path / 'o')
    assert list(steps) == CORE + TRAIN
    mmcv = steps['mmcv']
    assert mmcv['status'] == 'dry-run' and mmcv['command'].startswith('background: ')
    assert 'MAX_JOBS=12' in mmcv['command'] and 'FORCE_CUDA=1' in mmcv['command']


def test_budget_skips_what_would_not_fit(tmp_path):
    run_tool(SCRIPT, '--dry-run', '--budget', '1', '--out', tmp_path / 'o', timeout=300)
    _, steps = read_summary(tmp_path / 'o')
    assert list(steps) == CORE + ['mmcv']  # no --with-mmcv: skipped for that reason
    assert all(s['status'] == 'skipped' for s in steps.values())
    assert 'over the --budget of 1 s' in steps['env']['command']


def test_dry_run_defaults(tmp_path):
    """Default folder gpu_check_out/ in the caller's directory; no wheels, no mmcv."""
    run_tool(SCRIPT, '--dry-run', cwd=tmp_path, timeout=300)
    _, steps = read_summary(tmp_path / 'gpu_check_out')
    assert steps['wheels']['status'] == 'skipped' and steps['mmcv']['status'] == 'skipped'
    assert not any(n.startswith(('toy', 'train')) for n in steps)


@pytest.mark.parametrize('args,message', [
    (['--bogus'], 'unknown argument --bogus'),
    (['--dry-run', '--out'], '--out needs a folder'),
    (['--dry-run', '--wheels', '/no/such/folder'], 'no wheel folder'),
    (['--dry-run', '--part', 'most'], '--part needs all, stage1, core or train'),
    (['--dry-run', '--budget', 'soon'], '--budget needs a number of seconds'),
    (['--dry-run', '--parallel-mmcv'], '--parallel-mmcv needs --with-mmcv and --part all'),
])
def test_bad_arguments_are_usage_errors(args, message, tmp_path):
    proc = run_tool(SCRIPT, *args, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stdout
    assert 'gpu_check.sh [--out DIR]' in proc.stdout  # the usage follows


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a CPU machine')
def test_real_run_needs_a_gpu(tmp_path):
    proc = run_tool(SCRIPT, '--out', tmp_path / 'out', check=False)
    assert proc.returncode == 2 and 'no CUDA device' in proc.stdout


# ---- stage 1 on a bare GPU machine ---------------------------------------------------------
ALLOWED = ('torch', 'triton', 'timm')


def _requirements(dist):
    """Distribution names ``dist`` requires (extras left out)."""
    import importlib.metadata as md
    import re
    out = []
    for req in md.requires(dist) or []:
        if 'extra ==' in req:
            continue
        out.append(re.match(r'[A-Za-z0-9_.\-]+', req).group(0))
    return out


def bare_site(tmp_path):
    """A sitecustomize.py that lets Python import the standard library, this tree and
    torch, triton, timm with what they require, and refuses every other installed package
    as it would be refused where it is not installed."""
    import importlib.metadata as md
    norm = lambda name: name.lower().replace('_', '-')  # noqa: E731
    allowed, todo = set(), list(ALLOWED)
    while todo:
        name = norm(todo.pop())
        if name in allowed:
            continue
        allowed.add(name)
        try:
            todo += _requirements(name)
        except md.PackageNotFoundError:
            pass
    blocked = set()
    for dist in md.distributions():
        if norm(dist.metadata['Name']) in allowed:
            continue
        for f in dist.files or []:
            top = f.parts[0]
            if top.endswith(('.dist-info', '.egg-info', '.pth')) or top in ('..', '__pycache__'):
                continue
            blocked.add(top[:-3] if top.endswith('.py') else top)
    blocked -= {'backbones', 'sitecustomize'}
    (tmp_path / 'sitecustomize.py').write_text(
        'import sys\n'
        f'BLOCKED = {sorted(blocked)!r}\n'
        'class Blocker:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] in BLOCKED:\n'
        '            raise ModuleNotFoundError(f"No module named {name!r}", name=name)\n'
        'sys.meta_path.insert(0, Blocker())\n')
    return blocked


def test_stage1_on_a_bare_machine(tmp_path):
    """The first stage's dry run where only torch, triton, timm (and their requirements) and
    the tree import: scan correctness, stage-1 timings and backbones run, nothing of the mm
    stack, rich, cv2 or pytest is imported, and the tree it travels with is under 64 MiB."""
    site = tmp_path / 'site'
    site.mkdir()
    blocked = bare_site(site)
    assert {'mmengine', 'mmcv', 'mmdet', 'mmseg', 'cv2', 'rich', 'pytest'} <= blocked
    out = tmp_path / 'out'
    run_tool(SCRIPT, '--dry-run', '--part', 'stage1', '--out', out,
             env={'PYTHONPATH': str(site), 'PYTHON': sys.executable}, timeout=600)
    summary, steps = read_summary(out)
    assert list(steps) == ['stage1'] and steps['stage1']['status'] == 'ok', \
        (out / 'logs' / 'stage1.log').read_text()[-3000:]
    assert summary['carry']['bytes'] <= summary['carry']['limit_bytes'] == 64 * 2 ** 20
    with open(out / 'stage1.json') as f:
        rec = json.load(f)
    assert rec['dry_run'] and 'torch' in rec['backends']
    assert rec['correctness'] and all(c['ok'] for c in rec['correctness'])
    assert {r['arch'] for r in rec['stage1']} == {'v0-tiny', 'v2-tiny'}
    assert [r['backbone'] for r in rec['backbones']][0] == 'mambaout-t'
    assert rec['backbones'][0]['over_mambaout_t'] == 1.0
    log = (out / 'logs' / 'stage1.log').read_text()
    assert 'models and ops only' in log  # it really ran without mmengine
