"""tools/benchmark.py at tiny sizes: the records, and the invariants behind each ratio.

No speed thresholds here (benchmarks are not timed tests): every sub-command runs in
seconds and must produce a complete record whose correctness checks hold (equal outputs
and gradients, identical AP), and the README's performance section must be what
``benchmark.py report`` generates from ``results/benchmarks/``.
"""
import json
import os.path as osp
import shutil

import pytest

from conftest import REPO, run_tool

BENCH = osp.join(REPO, 'tools', 'benchmark.py')
ENVELOPE = {'schema', 'benchmark', 'command', 'timestamp', 'git', 'machine', 'device', 'threads',
            'versions', 'results', 'targets', 'notes'}
FEMTO_DET = 'det_configs/mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco.py'
FEMTO_SEG = 'seg_configs/upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py'


def bench(tmp_path, *args, name=None):
    run_tool(BENCH, *args, '--out', tmp_path, timeout=600)
    with open(osp.join(tmp_path, f'{name or args[0]}.json')) as f:
        rec = json.load(f)
    assert ENVELOPE <= set(rec), ENVELOPE - set(rec)
    assert rec['command'].startswith('python tools/benchmark.py ' + args[0])
    assert rec['machine']['cpu'] and rec['machine']['logical_cores'] >= 1
    assert rec['device'].startswith(('cpu', 'cuda'))
    assert rec['versions']['torch'] and rec['versions']['mmdet']
    assert len(rec['git']['commit']) == 40
    for t in rec['targets']:
        assert {'name', 'goal', 'value', 'met', 'why'} <= set(t) and isinstance(t['met'], bool)
    return rec


def test_scan_record_and_equality(tmp_path):
    rec = bench(tmp_path, 'scan', '--stages', '3', '--channels', '16', '--length', '70',
                '--repeats', '1', '--profile', '3')
    row, = rec['results']
    assert row['shape'] == {'batch': 1, 'channels': 16, 'length': 70, 'd_state': 16, 'groups': 4}
    assert row['equal']['ok'], row['equal']
    assert set(row['equal']['diffs']) == {'y', 'grad_u', 'grad_delta', 'grad_A', 'grad_B',
                                          'grad_C', 'grad_D', 'grad_delta_bias'}
    for mode in ('fwd', 'fwdbwd'):
        assert set(row[mode]['time']) == {'torch', 'reference'}
        assert row[mode]['speedup'] > 0 and set(row[mode]['peak_mib']) == {'torch', 'reference'}
    assert len(row['fwd']['profile']) == len(row['fwdbwd']['profile']) == 3
    assert len(rec['targets']) == 2


def test_scan_shapes_are_vmamba_t_at_512():
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from benchmark import vmamba_scan_shape
    # 4 routes x d_inner (2 x 96 / 2 x 384) channels, 128^2 / 32^2 tokens, d_state 16
    assert vmamba_scan_shape('v0-tiny', 1, 512) == (1, 768, 16384, 16, 4)
    assert vmamba_scan_shape('v0-tiny', 3, 512) == (1, 3072, 1024, 16, 4)
    assert vmamba_scan_shape('v2-tiny', 1, 512)[3] == 1


def test_backbone_record_and_timm_equivalence(tmp_path):
    rec = bench(tmp_path, 'backbone', '--shapes', '64x64x1', '--models', 'mambaout-t',
                'timm-mambaout-t', '--repeats', '1')
    row, = rec['results']
    assert row['input'] == [1, 3, 64, 64]
    assert row['mambaout_equal_timm'] <= 1e-4  # the two timed models compute the same maps
    for mode in ('fwd', 'fwdbwd'):
        assert row[mode]['ours_over_timm'] > 0


def test_cp_same_gradients(tmp_path):
    rec = bench(tmp_path, 'cp', '--configs', FEMTO_DET, '--shape', '96', '128')
    row, = rec['results']
    assert row['grads_equal'] and row['grads_max_rel_diff'] <= 1e-4
    assert row['with_cp']['loss'] == pytest.approx(row['without_cp']['loss'], rel=1e-6)
    assert row['with_cp']['peak_step_mib'] > 0 and row['without_cp']['peak_step_mib'] > 0


def test_coco_identical_ap(tmp_path):
    rec = bench(tmp_path, 'coco', '--images', '25', '--repeats', '1')
    r = rec['results']
    assert r['images'] == 25 and r['detections'] > r['gt_objects'] > 0
    assert r['metrics_identical'] and r['stats_max_abs_diff'] <= 1e-4
    assert 0.05 < r['metrics']['bbox_mAP'] < 0.95 and 0.05 < r['metrics']['segm_mAP'] < 0.95
    assert set(r['time']) == {'faster_coco_eval', 'pycocotools', 'mmdet_CocoMetric'}


def test_fast_coco_metric_falls_back_to_pycocotools(monkeypatch, caplog):
    from backbones import coco_metric
    monkeypatch.setattr(coco_metric, '_faster_classes', lambda: None)
    monkeypatch.setattr(coco_metric, '_logged', set())
    assert coco_metric.coco_backend('auto') == 'pycocotools'
    assert coco_metric.coco_backend('faster_coco_eval') == 'pycocotools'
    assert any('faster-coco-eval is not importable' in m for m in coco_metric._logged)
    with pytest.raises(ValueError, match='unknown COCO backend'):
        coco_metric.coco_backend('detectron')


def test_det_configs_evaluate_with_fast_coco_metric():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'det_configs', osp.basename(FEMTO_DET)))
    for ev in (cfg.val_evaluator, cfg.test_evaluator):
        assert ev.type == 'FastCocoMetric' and set(ev.metric) == {'bbox', 'segm'}
        assert ev.ann_file.endswith('annotations/instances_val2017.json') and not ev.format_only


@pytest.mark.parametrize('command, config', [('train', FEMTO_DET), ('infer', FEMTO_SEG)])
def test_throughput_on_toy_data(tmp_path, toy_data, command, config):
    root = osp.dirname(toy_data['coco'])  # the --out of make_toy_data
    stem = osp.splitext(osp.basename(config))[0]
    rec = bench(tmp_path, command, config, '--toy-data', root, '--iters', '2', '--warmup', '1',
                '--toy-scale', '96', name=f'{command}_{stem}')
    r = rec['results']
    assert r['config'] == config and r['toy_data'] and r['iters'] == 2
    assert r['images'] >= 2 and r['img_per_s'] > 0 and 0 <= r['data_share'] <= 1
    assert r['peak_mib'] >= 0


def test_unknown_config_is_a_clear_error(tmp_path):
    proc = run_tool(BENCH, 'train', 'det_configs/nope.py', '--out', tmp_path, check=False)
    assert proc.returncode != 0 and 'config file not found' in proc.stdout


def test_readme_section_is_generated_from_the_records(tmp_path):
    results = osp.join(REPO, 'results', 'benchmarks')
    # the committed section is exactly what the committed records render to
    run_tool(BENCH, 'report', '--check', '--dir', results)
    # and a stale section is caught
    readme = tmp_path / 'README.md'
    text = open(osp.join(REPO, 'README.md')).read()
    begin = text.index('<!-- benchmarks:begin -->') + len('<!-- benchmarks:begin -->')
    readme.write_text(text[:begin] + '\nstale\n' + text[begin:])
    proc = run_tool(BENCH, 'report', '--check', '--dir', results, '--readme', readme, check=False)
    assert proc.returncode != 0 and 'out of date' in proc.stdout
    run_tool(BENCH, 'report', '--dir', results, '--readme', readme)
    assert readme.read_text() == text
    shutil.copy(osp.join(results, 'coco.json'), tmp_path / 'broken.json')
    (tmp_path / 'broken.json').write_text('{"schema": 0}')
    proc = run_tool(BENCH, 'report', '--check', '--dir', tmp_path, '--readme', readme,
                    check=False)
    assert proc.returncode != 0 and 'not a benchmark record' in proc.stdout

