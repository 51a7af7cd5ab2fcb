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
    from backbones.benchmarks.scan import vmamba_scan_shape
    # 4 routes x d_inner (2 x 96 / 2 x 384) channels, 128^2 / 32^2 tokens, d_state 16
    assert vmamba_scan_shape('v0-tiny', 1, 512) == (1, 768, 16384, 16, 4)
    assert vmamba_scan_shape('v0-tiny', 3, 512) == (1, 3072, 1024, 16, 4)
    assert vmamba_scan_shape('v2-tiny', 1, 512)[3] == 1


def test_scan_at_stage_inputs_with_the_fused_route(tmp_path):
    """--input HxWxB: the exact stage grid, per-backend table, floor and fused-route rows."""
    from backbones.benchmarks import get_benchmark
    from backbones.benchmarks.scan import forward_bytes
    rec = bench(tmp_path, 'scan', '--input', '64x96x2', '--stages', '3', '--channels', '16',
                '--repeats', '1', '--profile', '0', '--fused')
    row, = rec['results']
    # stage 3 of 64x96: stride 16 -> 4 x 6 tokens; V0 (N=16), batch 2
    assert row['input'] == [2, 3, 64, 96]
    assert row['shape'] == {'batch': 2, 'channels': 16, 'length': 24, 'd_state': 16,
                            'groups': 4}
    assert row['equal']['ok'] and row['fwd']['speedup'] > 0  # the loop still runs
    assert row['floor']['bytes'] == forward_bytes(2, 16, 24, 16, 4)
    assert row['floor']['peak_gbps'] is None and row['floor']['ms'] is None  # a CPU
    tab = row['backends']['torch']
    assert {'fwd_ms', 'fwdbwd_ms', 'fwdbwd_over_fwd', 'peak_fwd_mib', 'peak_fwdbwd_mib',
            'fwd_gbps', 'fwd_of_peak', 'fwd_over_floor'} == set(tab)
    assert tab['fwd_ms'] > 0 and tab['fwd_gbps'] > 0 and tab['peak_fwdbwd_mib'] is not None
    assert tab['fwd_of_peak'] is None and tab['fwd_over_floor'] is None
    fused = row['fused']
    assert fused['grid'] == [4, 6] and fused['unfused_backend'] == 'torch'
    assert fused['equal_ok'], fused['equal']
    assert {'y', 'grad_x', 'grad_delta', 'grad_B', 'grad_C', 'grad_A'} <= set(fused['equal'])
    for mode in ('fwd', 'fwdbwd'):
        assert set(fused[mode]['time']) == {'fused', 'unfused'}
        assert fused[mode]['unfused_over_fused'] > 0
    assert any('bytes = 4 * (2*B*D*L' in n for n in rec['notes'])
    assert len(rec['targets']) == 2  # no triton here: only the loop targets
    text = '\n'.join(get_benchmark('scan').render('scan_x', rec))
    assert 'Selective scan per backend' in text and '| 64x96x2 | 3 |' in text
    assert 'fused cross2d route' in text


def test_scan_without_the_loop(tmp_path):
    rec = bench(tmp_path, 'scan', '--input', '64x96x2', '--arch', 'v2-tiny', '--stages', '1',
                '--channels', '16', '--repeats', '1', '--profile', '0', '--no-reference',
                '--no-memory')
    row, = rec['results']
    assert row['shape']['length'] == 16 * 24 and row['shape']['d_state'] == 1
    assert set(row['fwd']['time']) == {'torch'} and 'speedup' not in row['fwd']
    assert 'equal' not in row and row['backends']['torch']['peak_fwd_mib'] is None
    assert rec['targets'] == [] and any('--no-reference' in n for n in rec['notes'])


def test_scan_shapes_of_the_issue_inputs():
    from backbones.benchmarks.scan import forward_bytes, vmamba_scan_shape
    # Mask R-CNN 800x1344 batch 2: stage 1 is (2, 768, 67200, 16) (the issue's numbers)
    assert vmamba_scan_shape('v0-tiny', 1, (800, 1344), 2) == (2, 768, 67200, 16, 4)
    assert vmamba_scan_shape('v2-tiny', 4, (800, 1344), 2)[2] == 25 * 42
    assert vmamba_scan_shape('v2-tiny', 1, (512, 512), 2) == (2, 768, 16384, 1, 4)
    # the anchors' worked example: about 1245.2 MB at L=64000, N=16
    assert forward_bytes(2, 768, 64000, 16, 4) / 1e6 == pytest.approx(1245.2, abs=0.1)


@pytest.mark.parametrize('name, gbps', [
    ('NVIDIA H200', 4800), ('NVIDIA H100 80GB HBM3', 3350), ('NVIDIA H100 PCIe', 2000),
    ('NVIDIA H100 NVL', 3900), ('NVIDIA A100-SXM4-80GB', 2039), ('NVIDIA A100 80GB PCIe', 1935),
    ('NVIDIA A100-SXM4-40GB', 1555), ('NVIDIA GH200 480GB', None), ('Tesla T4', None),
    (None, None)])
def test_peak_bandwidth_by_device_name(name, gbps):
    from backbones.benchmarks.scan import device_peaks
    assert device_peaks(name)[0] == gbps


def _scan_row(floor_ms, backends):
    return {'floor': {'ms': floor_ms}, 'backends': {
        name: {'fwd_ms': fwd, 'fwdbwd_ms': fwdbwd, 'fwdbwd_over_fwd': fwdbwd / fwd,
               'fwd_over_floor': fwd / floor_ms if floor_ms else None}
        for name, (fwd, fwdbwd) in backends.items()}}


def test_scan_issue_targets_only_where_measured():
    from backbones.benchmarks.scan import issue_targets
    full = issue_targets(_scan_row(0.4, {'torch': (200, 600), 'triton': (1.0, 2.5),
                                         'mamba_ssm': (1.2, 2.0)}), '800x1344x2')
    assert [(t['goal'], t['met']) for t in full] == [
        ('<= 3.0x', True), ('<= 3.0x', True), ('<= 1.0', True), ('<= 1.0', False)]
    assert 'triton / floor' in full[0]['name'] and full[0]['value'] == 2.5
    # no known peak (floor None), no mamba_ssm: only the fwd+bwd / fwd ratio
    only = issue_targets(_scan_row(None, {'torch': (2, 5), 'triton': (1, 4)}), 'x')
    assert [t['name'] for t in only] == ['x stage 1: triton fwd+bwd / its fwd']
    assert issue_targets(_scan_row(0.4, {'torch': (2, 5)}), 'x') == []


def test_backbone_record_and_timm_equivalence(tmp_path):
    rec = bench(tmp_path, 'backbone', '--shapes', '64x64x1', '--models', 'mambaout-t',
                'timm-mambaout-t', '--repeats', '1')
    row, = rec['results']
    assert row['input'] == [1, 3, 64, 64]
    assert row['mambaout_equal_timm'] <= 1e-4  # the two timed models compute the same maps
    for mode in ('fwd', 'fwdbwd'):
        assert row[mode]['ours_over_timm'] > 0


def test_backbone_timm_baselines_under_fp16(tmp_path):
    from backbones.benchmarks import get_benchmark
    rec = bench(tmp_path, 'backbone', '--shapes', '64x64x1', '--models', 'mambaout-t',
                'timm-convnext-t', 'timm-swin-t', '--repeats', '1', '--precision', 'fp16')
    row, = rec['results']
    assert row['precision'] == 'fp16 autocast'
    for mode in ('fwd', 'fwdbwd'):
        ratios = row[mode]['over_mambaout_t']
        assert set(ratios) == {'mambaout-t', 'timm-convnext-t', 'timm-swin-t'}
        assert ratios['mambaout-t'] == 1.0 and all(v > 0 for v in ratios.values())
        assert 'peak_mib' not in row[mode]  # CUDA only
    assert rec['targets'] == []  # the VMamba targets need VMamba at 800x1344x2
    text = '\n'.join(get_benchmark('backbone').render('backbone_x', rec))
    assert 'Backbones side by side' in text and '`timm-swin-t`' in text


def test_backbone_vmamba_targets_at_the_issue_input():
    from backbones.benchmarks.backbone import vmamba_targets
    ratios = {'mambaout-t': 1.0, 'vmamba-t (torch)': 80.0, 'vmamba-t (triton)': 1.8,
              'vmamba-v2-t (triton)': 1.6}
    groups = {'vmamba-t': ['vmamba-t (torch)', 'vmamba-t (triton)'],
              'vmamba-v2-t': ['vmamba-v2-t (triton)'], 'mambaout-t': ['mambaout-t']}
    row = {'input': [2, 3, 800, 1344], 'fwdbwd': {'over_mambaout_t': ratios}}
    got = {t['name'].split(' 800')[0]: (t['goal'], t['met']) for t in vmamba_targets(row, groups)}
    assert got == {'vmamba-t (torch)': ('<= 2.0x', False), 'vmamba-t (triton)': ('<= 2.0x', True),
                   'vmamba-v2-t (triton)': ('<= 1.5x', False)}
    assert vmamba_targets(dict(row, input=[1, 3, 64, 64]), groups) == []


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
    from backbones.engine import log
    from backbones.evaluation import coco_metric
    monkeypatch.setattr(coco_metric, '_faster_classes', lambda: None)
    monkeypatch.setattr(log, '_logged', set())
    assert coco_metric.coco_backend('auto') == 'pycocotools'
    assert coco_metric.coco_backend('faster_coco_eval') == 'pycocotools'
    assert any('faster-coco-eval is not importable' in m for m in log._logged)
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


def test_train_synthetic_vs_loader_with_diagnostics(tmp_path, toy_data):
    """--synthetic: fixed-size batches beside the real loader in one run, each logged."""
    from backbones.benchmarks import get_benchmark
    root = osp.dirname(toy_data['coco'])
    stem = osp.splitext(osp.basename(FEMTO_DET))[0]
    rec = bench(tmp_path, 'train', FEMTO_DET, '--toy-data', root, '--toy-scale', '64',
                '--iters', '1', '--warmup', '1', '--synthetic', '64x96', '--cudnn', 'off',
                '--profile-steps', name=f'train_{stem}')
    r = rec['results']
    assert r['img_per_s'] > 0 and r['toy_data']  # the top level: the loader run
    synthetic, loader = r['runs']
    assert (synthetic['data'], loader['data']) == ('synthetic 64x96', 'loader')
    for run in r['runs']:
        assert run['cudnn'] == 'off' and run['cudnn_flags']['enabled'] is False
        assert run['img_per_s'] > 0 and run['peak_mib'] >= 0 and run['images'] == 2
        d = run['diagnostics']
        assert len(d['per_iteration']) == 2  # warmup + timed
        assert {'phase', 'shape', 'new_shape', 'new_in_process', 'host_s', 'total_s',
                'reserved_mib'} == set(d['per_iteration'][0])
        assert d['distinct_shapes'] >= 1 and 0 < d['host_share'] <= 1
        assert d['first_iteration_s'] > 0 and d['profile']
        for prof in d['profile'].values():
            assert prof['wall_s'] > 0 and prof['top_cpu']
    # every synthetic batch is one padded shape, the first seen by the process
    d = synthetic['diagnostics']
    assert d['distinct_shapes'] == 1 and d['repeat_shape_count'] == 1
    assert synthetic['diagnostics']['per_iteration'][0]['shape'] == [2, 3, 64, 96]
    assert 'repeated_shape' in d['profile']
    assert r['batch_size'] == 2 and r['config'] == FEMTO_DET
    text = '\n'.join(get_benchmark('train').render(f'train_{stem}', rec))
    assert '| synthetic 64x96 | off |' in text and '| loader | off |' in text


def test_synthetic_seg_batches_and_cudnn_modes():
    import torch
    from mmengine.config import Config

    from backbones.benchmarks.throughput import SyntheticBatches, cudnn_mode, parse_hw
    cfg = Config.fromfile(osp.join(REPO, FEMTO_SEG))
    batch = next(iter(SyntheticBatches(cfg, parse_hw('64x96'), 2)))
    assert [tuple(t.shape) for t in batch['inputs']] == [(3, 64, 96)] * 2
    assert batch['inputs'][0].dtype == torch.uint8
    seg = batch['data_samples'][0].gt_sem_seg.data
    assert seg.shape == (1, 64, 96) and seg.dtype == torch.long and 0 <= seg.min()
    flags = torch.backends.cudnn
    saved = flags.enabled, flags.benchmark
    with cudnn_mode('benchmark') as got:
        assert got == {'enabled': True, 'benchmark': True}
    with cudnn_mode('off') as got:
        assert got['enabled'] is False
    assert (flags.enabled, flags.benchmark) == saved


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

