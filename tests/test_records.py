"""The leaderboard trusts nothing it did not check: every run record passes one schema
(backbones/results/schema.py) before it reaches leaderboard.csv and Tables 2 / 3; a record
that fails is listed with its reason and left out, ``--strict`` makes it an error, and
records from elsewhere come in through ``tools/import_run.py``, validated."""
import json
import os
import os.path as osp
import shutil

import pytest

from conftest import REPO, load_tool

leaderboard = load_tool('leaderboard')
import_tool = load_tool('import_run')

DET = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py')
SEG = osp.join(REPO, 'seg_configs', 'upernet_mambaout-t_8xb2-amp-160k_ade20k-512x512.py')
DET_METRICS = {'coco/bbox_mAP': 0.452, 'coco/bbox_mAP_50': 0.674, 'coco/bbox_mAP_75': 0.497,
               'coco/segm_mAP': 0.409, 'coco/segm_mAP_50': 0.641, 'coco/segm_mAP_75': 0.440}
SEG_METRICS = {'aAcc': 82.3, 'mIoU': 47.61, 'mAcc': 58.9}


@pytest.fixture(scope='module')
def good_runs(tmp_path_factory):
    """One det and one seg run folder written by tools/test.py's own writer."""
    from mmengine.config import Config

    from backbones.results.runs import write_run_record
    root = tmp_path_factory.mktemp('records')
    checkpoint = root / 'epoch_12.pth'
    checkpoint.write_bytes(b'the weights')
    folders = {}
    for name, config, metrics in (('det', DET, DET_METRICS), ('seg', SEG, SEG_METRICS)):
        folder = str(root / name)
        write_run_record(folder, Config.fromfile(config), metrics, config=config,
                         checkpoint=str(checkpoint), tta=False, world_size=8, env={})
        folders[name] = folder
    return folders


def _copy(good_runs, runs, name, kind='det', **changes):
    """A copy of a good run folder, its record changed (``None`` deletes a field)."""
    folder = osp.join(runs, name)
    shutil.copytree(good_runs[kind], folder)
    path = osp.join(folder, 'metrics.json')
    rec = json.load(open(path))
    for key, value in changes.items():
        if key == 'metrics':
            rec['metrics'].update(value)
        elif value is None:
            rec.pop(key)
        else:
            rec[key] = value
    with open(path, 'w') as f:
        json.dump(rec, f)
    return folder


def test_records_written_by_test_py_pass_and_reach_the_tables(good_runs, tmp_path):
    from backbones.results.runs import load_run
    det, seg = load_run(good_runs['det']), load_run(good_runs['seg'])
    assert det['values']['ap_box'] == 45.2 and det['source'] == 'test'
    assert seg['values']['miou'] == 47.61 and det['backbone'] == 'MambaOut-Tiny'
    rec = json.load(open(osp.join(good_runs['det'], 'metrics.json')))
    assert rec['config'] == 'det_configs/mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py'
    assert len(rec['config_digest']) == len(rec['checkpoint_sha256']) == 64


# (record change, the reason the collector must give); each of these reached the tables
# (or filled a column) before the schema: e.g. 45.1 showed as 4510.0, 0.48 as 0.48.
BAD_RECORDS = {
    'AP in percent': (dict(metrics={'coco/bbox_mAP': 45.1}),
                      'coco/bbox_mAP is 45.1: AP in percent, but mmdet writes it as a fraction'),
    'mIoU as a fraction': (dict(kind='seg', metrics={'aAcc': 0.82, 'mIoU': 0.48, 'mAcc': 0.59}),
                           'fractions of 1, but mmseg writes percent'),
    'mIoU and mAcc in different units': (dict(kind='seg', metrics={'mAcc': 0.59}),
                                         'mIoU=47.61 is above mAcc=0.59'),
    'AP as a string': (dict(metrics={'coco/segm_mAP': '0.409'}),
                       "coco/segm_mAP is '0.409' (str), not a number"),
    'boolean written as a string': (dict(tta='false'),
                                    "tta is 'false', expected true or false (a JSON boolean)"),
    'world size as a string': (dict(world_size='8'), "world_size is '8', expected an integer"),
    'date that is not a date': (dict(date='yesterday'), 'date is \'yesterday\', expected an ISO'),
    'record without provenance': (dict(record_version=None),
                                  'record_version is None, expected 2'),
    'unknown source': (dict(source='spreadsheet'), "source is 'spreadsheet', expected one of"),
    'no checkpoint sha256': (dict(checkpoint_sha256=None), 'checkpoint_sha256 is missing'),
    'config that does not exist': (dict(config='det_configs/mask-rcnn_gone_fpn_1x_coco.py'),
                                   'config det_configs/mask-rcnn_gone_fpn_1x_coco.py does not '
                                   'exist'),
    'task not the config\'s': (dict(task='mmseg', metrics={'mIoU': 40.0}),
                               "task is 'mmseg', but config.py is an 'mmdet' config"),
    'backbone not the config\'s': (dict(backbone={'type': 'MambaOut', 'arch': 'base',
                                                  'model_name': None}),
                                   "backbone {'type': 'MambaOut', 'arch': 'base'"),
    'TTA claimed without a TTA model': (dict(tta=True), 'tta is True, but config.py has no '
                                                        'test-time augmentation model'),
    'evaluated on the training split': (dict(allowed_checks=['eval-on-train']),
                                        'evaluated with --allow eval-on-train'),
    'imported without an origin': (dict(source='imported'), 'origin is missing'),
}


@pytest.mark.parametrize('case', sorted(BAD_RECORDS))
def test_a_record_that_fails_the_schema_never_reaches_the_tables(case, good_runs, tmp_path):
    from backbones.results.runs import RunError, load_run
    changes, reason = BAD_RECORDS[case]
    folder = _copy(good_runs, str(tmp_path), 'run', **changes)
    with pytest.raises(RunError) as err:
        load_run(folder)
    assert reason in str(err.value), str(err.value)


def test_edited_config_py_breaks_the_provenance(good_runs, tmp_path):
    from backbones.results.runs import RunError, load_run
    folder = _copy(good_runs, str(tmp_path), 'run')
    with open(osp.join(folder, 'config.py'), 'a') as f:
        f.write('\n# tuned after the fact\n')
    with pytest.raises(RunError, match='config.py does not match the record: its sha256'):
        load_run(folder)


def test_collector_lists_bad_records_and_strict_refuses_them(good_runs, tmp_path, capsys):
    runs, out = str(tmp_path / 'runs'), str(tmp_path / 'out')
    shutil.copytree(good_runs['det'], osp.join(runs, 'good-det'))
    _copy(good_runs, runs, 'percent-ap', metrics={k: v * 100 for k, v in DET_METRICS.items()})
    _copy(good_runs, runs, 'string-flag', kind='seg', tta='false')
    leaderboard.main(['--runs', runs, '--out', out])
    log = capsys.readouterr().out
    assert 'skipped run percent-ap: metrics coco/bbox_mAP is 45.2: AP in percent' in log
    assert "skipped run string-flag: tta is 'false'" in log
    table2 = open(osp.join(out, 'table2.md')).read()
    assert '**45.2** (45.1, +0.1)' in table2 and '4520' not in table2
    assert '| MambaOut-Tiny' in open(osp.join(out, 'table3.md')).read()
    assert '**47.61**' not in open(osp.join(out, 'table3.md')).read()  # its only run is bad

    strict_out = str(tmp_path / 'strict')
    with pytest.raises(SystemExit) as exc:
        leaderboard.main(['--runs', runs, '--out', strict_out, '--strict'])
    message = str(exc.value.code)
    assert message.startswith('error: --strict: 2 run records') and 'percent-ap' in message
    assert 'string-flag' in message and not osp.exists(strict_out)


def test_release_runs_are_stamped_through_the_schema(good_runs, tmp_path):
    """What reproduce.py release does to a record tools/test.py wrote (issue 19)."""
    from backbones.metadata import load_releases
    from backbones.results.runs import RunError, load_run, stamp_record
    folder = _copy(good_runs, str(tmp_path), 'release')
    row = next(r.row for r in load_releases() if r.task == 'det')
    with pytest.raises(RunError, match="release.row is 'MambaOut-Tiny', not a det row of "
                                       "results/releases.csv"):
        stamp_record(folder, source='release', release={'row': 'MambaOut-Tiny',
                                                        'sha256': 'cd' * 32})
    with pytest.raises(RunError, match='release.sha256 is None'):
        stamp_record(folder, source='release', release={'row': row})
    stamp_record(folder, source='release', release={'row': row, 'sha256': 'cd' * 32})
    assert load_run(folder)['source'] == 'release'
    with pytest.raises(RunError, match="source is 'zenodo'"):
        stamp_record(folder, source='zenodo')
    assert load_run(folder)['source'] == 'release'  # the refused stamp wrote nothing


def test_import_converts_units_and_reaches_the_tables(tmp_path):
    paper = {'coco/bbox_mAP': 45.1, 'coco/bbox_mAP_50': 67.3, 'coco/bbox_mAP_75': 49.6,
             'coco/segm_mAP': 41.0, 'coco/segm_mAP_50': 64.1, 'coco/segm_mAP_75': 44.1}
    runs = tmp_path / 'runs'
    common = [DET, '--origin', 'MambaOut paper, Table 2', '--checkpoint-sha256', 'ab' * 32,
              '--metric', *[f'{k}={v}' for k, v in paper.items()]]
    with pytest.raises(SystemExit) as exc:  # as printed, but without saying so
        import_tool.main(common + ['--out', str(runs / 'as-printed')])
    assert 'coco/bbox_mAP is 45.1: AP in percent' in str(exc.value.code)
    assert not runs.exists() or not os.listdir(runs)
    with pytest.raises(SystemExit) as exc:
        import_tool.main([DET, '--origin', ' ', '--metric', 'coco/bbox_mAP=0.4', '--out',
                          str(runs / 'anonymous')])
    assert '--origin is empty' in str(exc.value.code)
    assert 'give --checkpoint' in str(exc.value.code)

    import_tool.main(common + ['--units', 'paper', '--out', str(runs / 'paper')])
    rec = json.load(open(runs / 'paper' / 'metrics.json'))
    assert rec['source'] == 'imported' and rec['metrics']['coco/bbox_mAP'] == pytest.approx(0.451)
    out = str(tmp_path / 'out')
    leaderboard.main(['--runs', str(runs), '--out', out, '--strict'])
    assert '**45.1** (45.1, +0.0)' in open(osp.join(out, 'table2.md')).read()
