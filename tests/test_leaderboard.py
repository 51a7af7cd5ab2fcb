"""tools/leaderboard.py: collection from run folders, broken runs skipped, atomic outputs."""
import csv
import json
import os
import os.path as osp
import random
import subprocess
import sys
import time

import pytest

from conftest import TOOLS

sys.path.insert(0, TOOLS)
import leaderboard  # noqa: E402


def _run(root, name, task='mmdet', metrics=None, **extra):
    folder = osp.join(root, name)
    os.makedirs(folder)
    if metrics is None:
        metrics = ({'coco/bbox_mAP': 0.452, 'coco/bbox_mAP_50': 0.674, 'coco/bbox_mAP_75': 0.497,
                    'coco/segm_mAP': 0.409, 'coco/segm_mAP_50': 0.641, 'coco/segm_mAP_75': 0.440}
                   if task == 'mmdet' else {'mIoU': 47.61, 'mAcc': 58.0})
    rec = dict(metrics=metrics, task=task, config=f'/x/{name}.py', world_size=8,
               date='2026-11-25T10:00:00+00:00', schedule='12e', toy=False,
               backbone=dict(type='MambaOut', arch='tiny'), tta=False)
    rec.update(extra)
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
    for name, reason in (('no-metrics', 'no metrics.json'), ('corrupt', 'not valid JSON'),
                         ('missing-key', 'lacks coco/bbox_mAP_50'), ('nan-value', 'not finite')):
        line = next(ln for ln in log.splitlines() if f'skipped run {name}:' in ln)
        assert reason in line
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
    assert toy[0]['toy_ap_box_50'] == '62.0' and toy[0]['ap_box'] == '' and toy[0]['ap_box_50'] == ''
    # published rows of other backbones are kept as they are
    swin = next(r for r in rows if r['task'] == 'det' and r['backbone'] == 'Swin-B')
    assert swin['source'] == 'published' and swin['ap_box_paper'] == '46.9' and swin['ap_box_50_paper'] == ''
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


def _collector(runs, out):
    return subprocess.Popen([sys.executable, osp.join(TOOLS, 'leaderboard.py'), '--runs', runs,
                             '--out', out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.mark.slow
def test_concurrent_and_killed_collectors_never_corrupt_the_csv(runs, tmp_path):
    out = str(tmp_path / 'out')
    empty = str(tmp_path / 'no-runs')
    os.makedirs(empty)
    leaderboard.main(['--runs', empty, '--out', out])
    old = open(osp.join(out, 'leaderboard.csv')).read()
    leaderboard.main(['--runs', runs, '--out', str(tmp_path / 'expected')])
    new = open(osp.join(tmp_path / 'expected', 'leaderboard.csv')).read()
    assert old != new
    csv_path = osp.join(out, 'leaderboard.csv')

    start = time.monotonic()
    assert _collector(runs, str(tmp_path / 'timed')).wait(timeout=300) == 0
    duration = time.monotonic() - start

    # A collector killed at random moments leaves the old CSV or the new one, never a mix;
    # the moments spread over a whole run (start-up is most of it, the writes at the end).
    rng = random.Random(0)
    for _ in range(5):
        with open(csv_path, 'w') as f:
            f.write(old)
        proc = _collector(runs, out)
        time.sleep(rng.uniform(0.5, 1.1) * duration)
        proc.kill()
        proc.wait()
        assert open(csv_path).read() in (old, new)

    # Two collectors at once: both finish, and the CSV is one complete version.
    procs = [_collector(runs, out), _collector(runs, out)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stdout.read()
    assert open(csv_path).read() == new
