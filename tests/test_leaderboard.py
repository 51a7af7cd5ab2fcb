"""tools/leaderboard.py: collection from run folders, broken runs skipped, atomic outputs."""
import csv
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from backbones.results.runs import DET_METRICS, PARTIAL_RECORD
from conftest import REPO, TOOLS, load_tool

leaderboard = load_tool('leaderboard')


def _run(root, name, task='mmdet', metrics=None, **extra):
    """A run folder as tools/test.py leaves it: a record with its provenance (schema
    version 2) and the resolved config.py it names by digest; the config file the record
    names is written beside the runs folder."""
    folder = osp.join(root, name)
    os.makedirs(folder)
    if metrics is None:
        metrics = ({'coco/bbox_mAP': 0.452, 'coco/bbox_mAP_50': 0.674, 'coco/bbox_mAP_75': 0.497,
                    'coco/segm_mAP': 0.409, 'coco/segm_mAP_50': 0.641, 'coco/segm_mAP_75': 0.440}
                   if task == 'mmdet' else {'mIoU': 47.61, 'mAcc': 58.0})
    rec = dict(metrics=metrics, task=task, world_size=8,
               date='2026-11-25T10:00:00+00:00', schedule='12e', toy=False,
               backbone=dict(type='MambaOut', arch='tiny'), tta=False)
    rec.update(extra)
    backbone = dict(rec['backbone'], model_name=None)
    model = dict(backbone=backbone)
    if rec['tta']:
        model = dict(type='SegTTAModel', module=model)
    text = f'default_scope = {task!r}\nmodel = {model!r}\n'
    configs = osp.join(osp.dirname(root), 'configs')
    os.makedirs(configs, exist_ok=True)
    config = rec.setdefault('config', osp.join(configs, f'{name}.py'))
    if not osp.isfile(config):
        with open(config, 'w') as f:
            f.write(text)
    with open(osp.join(folder, 'config.py'), 'w') as f:
        f.write(text)
    rec.setdefault('record_version', 2)
    rec.setdefault('source', 'test')
    rec.setdefault('flags', [])
    rec.setdefault('config_digest', hashlib.sha256(text.encode()).hexdigest())
    rec.setdefault('checkpoint_sha256', hashlib.sha256(name.encode()).hexdigest())
    with open(osp.join(folder, 'metrics.json'), 'w') as f:
        json.dump(rec, f)
    return folder


@pytest.fixture
def runs(tmp_path):
    root = str(tmp_path / 'runs')
    os.makedirs(root)
    _run(root, 'det-mambaout-t')
    _run(root, 'seg-mambaout-t', task='mmseg')
    _run(root, 'seg-mambaout-t-tta', task='mmseg', metrics={'mIoU': 48.9}, tta=True)
    _run(root, 'toy-det-femto', toy=True, backbone=dict(type='MambaOut', arch='femto'),
         metrics={'coco/bbox_mAP': 0.31, 'coco/bbox_mAP_50': 0.62, 'coco/bbox_mAP_75': 0.3,
                  'coco/segm_mAP': 0.28, 'coco/segm_mAP_50': 0.6, 'coco/segm_mAP_75': 0.2})
    os.makedirs(osp.join(root, 'no-metrics'))
    broken = _run(root, 'corrupt')
    with open(osp.join(broken, 'metrics.json'), 'w') as f:
        f.write('{"metrics": {"coco/bbox_mAP": 0.4')  # truncated
    _run(root, 'missing-key', metrics={'coco/bbox_mAP': 0.4})
    _run(root, 'nan-value', metrics={'mIoU': float('nan')}, task='mmseg')
    _run(root, 'all-zero', metrics={k: 0.0 for k in DET_METRICS.values()})
    _run(root, 'no-ground-truth', metrics={k: -1.0 for k in DET_METRICS.values()})
    _run(root, 'flagged', task='mmseg', flags=['all-zero result (mIoU are all 0)'])
    partial = _run(root, 'partial', partial_checkpoint='missing keys (3): a, b, c')
    os.rename(osp.join(partial, 'metrics.json'), osp.join(partial, PARTIAL_RECORD))
    return root


def _rows(out):
    with open(osp.join(out, 'leaderboard.csv'), newline='') as f:
        return list(csv.DictReader(f))


def test_collects_and_skips_broken_runs(runs, tmp_path, capsys):
    out = str(tmp_path / 'out')
    comp = tmp_path / 'complexity.csv'
    comp.write_text('config,config_digest,params_m,macs_g,shape\n'
                    'det-mambaout-t.py,abc,43.13,262.5,800x1280\n')
    leaderboard.main(['--runs', runs, '--out', out, '--complexity', str(comp)])
    log = capsys.readouterr().out
    skipped = {ln.split('skipped run ', 1)[1].split(':', 1)[0]: ln for ln in log.splitlines()
               if 'skipped run ' in ln}
    reasons = {'no-metrics': 'no metrics.json', 'corrupt': 'not valid JSON',
               'missing-key': 'lacks coco/bbox_mAP_50', 'nan-value': 'not finite',
               'all-zero': 'all-zero result', 'no-ground-truth': 'negative metrics',
               'flagged': 'flagged by tools/test.py: all-zero result',
               'partial': f'only {PARTIAL_RECORD}: evaluated with --allow-partial'}
    assert sorted(skipped) == sorted(reasons), log  # exactly these, no other
    for name, reason in reasons.items():
        assert reason in skipped[name], skipped[name]
    rows = _rows(out)
    det = next(r for r in rows if r['task'] == 'det' and r['backbone'] == 'MambaOut-Tiny')
    assert det['source'] == 'measured' and det['ap_box'] == '45.2' and det['ap_box_paper'] == '45.1'
    assert det['ap_box_diff'] == '+0.1' and det['ap_mask_75_diff'] == '-0.1'
    assert det['params_m'] == '43.13' and det['params_m_diff'] == '+0.1'
    assert det['macs_g_diff'] == '+0.5' and det['gpus'] == '8'
    seg = next(r for r in rows if r['task'] == 'seg' and r['backbone'] == 'MambaOut-Tiny')
    assert (seg['miou_ss'], seg['miou_ms'], seg['miou_ss_paper']) == ('47.61', '48.9', '47.4')
    # a toy run is a row of its own and fills only the toy columns
    toy = [r for r in rows if r['source'] == 'toy']
    assert len(toy) == 1 and toy[0]['backbone'] == 'MambaOut-Femto'
    assert toy[0]['toy_ap_box_50'] == '62.0'
    assert toy[0]['ap_box'] == '' and toy[0]['ap_box_50'] == ''
    # published rows of other backbones are kept as they are
    swin = next(r for r in rows if r['task'] == 'det' and r['backbone'] == 'Swin-B')
    assert swin['source'] == 'published' and swin['ap_box_paper'] == '46.9'
    assert swin['ap_box_50_paper'] == ''
    table2 = open(osp.join(out, 'table2.md')).read()
    assert '**45.2** (45.1, +0.1)' in table2 and 'Toy runs' in table2
    assert '| MambaOut-Femto | 31.0 | 62.0 | 28.0 |' in table2
    assert '**48.9** (48.6, +0.3)' in open(osp.join(out, 'table3.md')).read()
    with open(osp.join(out, 'ap_vs_macs.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_failed_write_keeps_previous_file(runs, tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    leaderboard.main(['--runs', runs, '--out', out])
    before = open(osp.join(out, 'leaderboard.csv')).read()

    def broken_fsync(fd):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'fsync', broken_fsync)
    with pytest.raises(OSError, match='disk full'):
        leaderboard.main(['--runs', runs, '--out', out])
    assert open(osp.join(out, 'leaderboard.csv')).read() == before
    assert not [f for f in os.listdir(out) if f.endswith('.part')]


def _collector(runs, out, prelude=''):
    code = prelude + (f'import runpy, sys\nsys.argv = ["leaderboard.py", "--runs", {runs!r}, '
                      f'"--out", {out!r}]\nrunpy.run_path({osp.join(TOOLS, "leaderboard.py")!r}, '
                      f'run_name="__main__")\n')
    return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)


# Every file write whose target is leaderboard.csv (the file itself or a temp file beside
# it) writes its first half, says so, and waits 60 s before the second: the test kills the
# process in that wait, i.e. in the middle of the write, every time.
HALF_WRITES = r"""
import builtins, os, time
_open, _fdopen = builtins.open, os.fdopen

class Halves:
    def __init__(self, f, name):
        self._f, self._name = f, name
    def write(self, data):
        half = len(data) // 2
        self._f.write(data[:half])
        self._f.flush()
        print('HALF', self._name, flush=True)
        time.sleep(60)
        return self._f.write(data[half:])
    def __enter__(self):
        self._f.__enter__()
        return self
    def __exit__(self, *exc):
        return self._f.__exit__(*exc)
    def __getattr__(self, name):
        return getattr(self._f, name)

def _wrap(f, name):
    writing = any(m in getattr(f, 'mode', '') for m in 'wax+')
    return Halves(f, name) if writing and 'leaderboard.csv' in str(name) else f

builtins.open = lambda file, *a, **k: _wrap(_open(file, *a, **k), file)
os.fdopen = lambda fd, *a, **k: _wrap(_fdopen(fd, *a, **k), os.readlink(f'/proc/self/fd/{fd}'))
"""
# The writer a naive implementation would use: the control that the test can fail.
NAIVE_WRITER = """
import backbones.results.leaderboard as lb
def write_in_place(data, path):
    with open(path, 'w' if isinstance(data, str) else 'wb') as f:
        f.write(data)
lb.write_file_atomic = write_in_place
"""


def _kill_mid_write(runs, out, prelude):
    """Start a collector, kill it half-way through writing leaderboard.csv; return the
    path its half write went to."""
    proc = _collector(runs, out, prelude)
    for line in proc.stdout:
        if line.startswith('HALF '):
            proc.kill()
            proc.wait()
            return line.split(' ', 1)[1].strip()
    proc.wait()
    pytest.fail(f'the collector exited {proc.returncode} without writing leaderboard.csv')


@pytest.fixture
def old_and_new_csv(runs, tmp_path):
    empty = str(tmp_path / 'no-runs')
    os.makedirs(empty)
    leaderboard.main(['--runs', empty, '--out', str(tmp_path / 'old')])
    leaderboard.main(['--runs', runs, '--out', str(tmp_path / 'new')])
    old, new = (open(tmp_path / d / 'leaderboard.csv').read() for d in ('old', 'new'))
    assert old != new
    return old, new


@pytest.mark.slow
def test_collector_killed_mid_write_leaves_the_old_csv(runs, tmp_path, old_and_new_csv):
    """Killed in the middle of writing the CSV, a collector leaves the old one whole; with
    an in-place writer (the control) the same kill leaves half a CSV, so the test can fail."""
    old, new = old_and_new_csv
    results = {}
    for name, prelude in (('atomic', HALF_WRITES), ('in place', HALF_WRITES + NAIVE_WRITER)):
        out = tmp_path / name.replace(' ', '_')
        out.mkdir()
        (out / 'leaderboard.csv').write_text(old)
        written = _kill_mid_write(runs, str(out), prelude)
        results[name] = (written, (out / 'leaderboard.csv').read_text())
    written, text = results['atomic']
    assert text == old
    assert written != str(tmp_path / 'atomic' / 'leaderboard.csv')  # a temp file beside it
    written, text = results['in place']
    assert written == str(tmp_path / 'in_place' / 'leaderboard.csv')
    assert text not in (old, new) and new.startswith(text)  # the control: half a CSV


@pytest.mark.slow
def test_concurrent_collectors_leave_one_complete_csv(runs, tmp_path, old_and_new_csv):
    out = str(tmp_path / 'out')
    procs = [_collector(runs, out), _collector(runs, out)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stdout.read()
    assert open(osp.join(out, 'leaderboard.csv')).read() == old_and_new_csv[1]


def _record(tmp_path, metrics, partial=None, name='run'):
    from mmengine.config import Config

    from backbones.results.runs import write_run_record
    config = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py')
    cfg = Config.fromfile(config)
    work_dir = str(tmp_path / name)
    checkpoint = tmp_path / 'c.pth'
    checkpoint.write_bytes(b'weights')
    flags = write_run_record(work_dir, cfg, metrics, config=config, checkpoint=str(checkpoint),
                             tta=False, world_size=1, env={}, partial=partial)
    return work_dir, flags


@pytest.mark.parametrize('value, flag', [(float('nan'), 'not a finite number'),
                                         (0.0, 'all-zero result'), (-1.0, 'negative metrics'),
                                         (0.25, None)])
def test_test_py_flags_unusable_results_and_the_collector_skips_them(tmp_path, value, flag):
    from backbones.results.runs import RunError, load_run
    work_dir, flags = _record(tmp_path, {k: value for k in DET_METRICS.values()})
    record = json.load(open(osp.join(work_dir, 'metrics.json')))
    if flag is None:
        assert flags == record['flags'] == []
        assert load_run(work_dir)['values']['ap_box'] == 25.0
        return
    assert len(flags) == 1 and flag in flags[0] and record['flags'] == flags
    with pytest.raises(RunError, match=f'flagged by tools/test.py: {flag}'):
        load_run(work_dir)


def test_partial_checkpoint_run_never_writes_metrics_json(tmp_path):
    from backbones.results.runs import RunError, load_run
    work_dir, _ = _record(tmp_path, {k: 0.3 for k in DET_METRICS.values()},
                          partial='missing keys (1): neck.x')
    assert sorted(os.listdir(work_dir)) == ['config.py', 'env.json', 'metrics.partial.json']
    with pytest.raises(RunError, match='--allow-partial'):
        load_run(work_dir)


def test_a_row_added_only_to_the_metadata_and_its_config_reaches_the_tables(
        runs, tmp_path, monkeypatch):
    """Adding a backbone = a line in results/backbones.csv + its config files: nothing else
    has to know it for its runs, Params and MACs to reach leaderboard.csv and the tables."""
    from backbones import metadata
    from backbones.results.reproduce import toy_runs
    det_dir = tmp_path / 'det_configs'
    shutil.copytree(metadata.TASK_DIRS['det'], det_dir)
    config = det_dir / 'mask-rcnn_mambaout-wide_fpn_8xb2-amp-1x_coco.py'
    config.write_text("_base_ = './mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py'\n")
    rows_csv = tmp_path / 'backbones.csv'
    rows_csv.write_text(open(metadata.ROWS_CSV).read()
                        + f'MambaOut-Wide,MambaOut,,Conv,MambaOut,wide,{config.name},,,'
                          'tab:red,o,det,\n')
    monkeypatch.setattr(metadata, 'ROWS_CSV', str(rows_csv))
    monkeypatch.setattr(metadata, 'TASK_DIRS', dict(metadata.TASK_DIRS, det=str(det_dir)))
    _run(runs, 'det-mambaout-wide', config=str(config), backbone=dict(type='MambaOut',
                                                                        arch='wide'))
    comp = tmp_path / 'complexity.csv'
    comp.write_text('config,config_digest,params_m,macs_g,shape\n'
                    f'{config.name},abc,61.5,301.2,800x1280\n')
    out = str(tmp_path / 'out')
    leaderboard.main(['--runs', runs, '--out', out, '--complexity', str(comp)])

    wide = [r for r in _rows(out) if r['backbone'] == 'MambaOut-Wide']
    assert len(wide) == 1 and wide[0]['task'] == 'det' and wide[0]['source'] == 'measured'
    assert (wide[0]['config'], wide[0]['token_mixing']) == (config.name, 'Conv')
    assert (wide[0]['params_m'], wide[0]['macs_g'], wide[0]['ap_box']) == \
        ('61.5', '301.2', '45.2')
    table2 = open(osp.join(out, 'table2.md')).read()
    assert f'| MambaOut-Wide (`{config.name}`) | Conv | **61.5** | **301.2** |' in table2
    assert str(config) in toy_runs()  # and the main job's toy mode trains it


def test_a_cell_the_paper_leaves_empty_shows_ours_alone():
    """TransNeXt's MACs: the paper prints '-', ours fills the cell, marked as ours only; a
    row outside the paper stays plain bold, a published cell keeps (paper, diff)."""
    from backbones.results.tables import to_markdown
    blank = {k: '' for k in ('size', 'config', 'token_mixing', 'params_m', 'macs_g',
                             'params_m_paper', 'macs_g_paper', 'params_m_diff', 'macs_g_diff')}
    blank.update({f'{c}{s}': '' for c in ('miou_ss', 'miou_ms') for s in ('', '_paper', '_diff')})
    rows = [dict(blank, task='seg', size='tiny', backbone='TransNeXt-Tiny', source='published',
                 params_m='58.52', params_m_paper='59', params_m_diff='-0.5', macs_g='977.7'),
            dict(blank, task='seg', backbone='Ours-Only', source='ours', macs_g='12.5')]
    text = to_markdown(rows, 'seg')
    assert '| **58.52** (59, -0.5) | **977.7** (-, ours only) |' in text
    assert '| **12.5** |' in text and '12.5** (-' not in text
