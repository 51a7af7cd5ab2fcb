"""End-to-end: stock ResNet-18 Mask R-CNN / UperNet through tools/train.py, tools/test.py and
resume on the toy datasets (tools/dist_train.sh with 2 CPU processes: tests/test_configs.py,
on one det and one seg config of the suite); the Slurm scripts' srun lines."""
import json
import os
import os.path as osp
import socket

import pytest

from conftest import TEST_CONFIGS, run_tool, toy_options

DET_CFG = osp.join(TEST_CONFIGS, 'mask-rcnn_r18_fpn_amp-1x_coco.py')
SEG_CFG = osp.join(TEST_CONFIGS, 'upernet_r18_amp-160k_ade20k-512x512.py')
COMMON = ['default_hooks.logger.interval=1', 'randomness.seed=0']

pytestmark = pytest.mark.slow


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _det_opts(toy_data, epochs):
    return toy_options(DET_CFG, toy_data['coco'], scale=128) + COMMON + [
        f'train_cfg.max_epochs={epochs}', 'default_hooks.checkpoint.interval=1']


def _seg_opts(toy_data, iters):
    return toy_options(SEG_CFG, toy_data['ade'], scale=128) + COMMON + [
        f'train_cfg.max_iters={iters}', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2']


def _metrics(work_dir):
    with open(osp.join(work_dir, 'metrics.json')) as f:
        record = json.load(f)
    assert osp.isfile(osp.join(work_dir, 'config.py'))
    env = json.load(open(osp.join(work_dir, 'env.json')))
    assert env['mmcv_ops'].startswith('compiled')
    return record


def test_detection_train_resume_test(toy_data, tmp_path):
    work = str(tmp_path / 'det')
    out = run_tool('tools/train.py', DET_CFG, '--work-dir', work,
                   '--cfg-options', *_det_opts(toy_data, 1)).stdout
    assert 'AmpOptimWrapper replaced by OptimWrapper' in out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert 'coco/bbox_mAP' in out  # validation ran after the epoch

    out = run_tool('tools/train.py', DET_CFG, '--work-dir', work, '--resume',
                   '--cfg-options', *_det_opts(toy_data, 2)).stdout
    assert 'resumed epoch: 1' in out
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))

    test_dir = str(tmp_path / 'det_test')
    run_tool('tools/test.py', DET_CFG, osp.join(work, 'epoch_2.pth'), '--work-dir', test_dir,
             '--out', str(tmp_path / 'det.pkl'), '--cfg-options', *_det_opts(toy_data, 2))
    record = _metrics(test_dir)
    assert record['task'] == 'mmdet' and record['world_size'] == 1
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert 0.0 <= record['metrics'][key] <= 1.0
    assert osp.getsize(tmp_path / 'det.pkl') > 0


def test_segmentation_train_resume_test(toy_data, tmp_path):
    work = str(tmp_path / 'seg')
    out = run_tool('tools/train.py', SEG_CFG, '--work-dir', work,
                   '--cfg-options', *_seg_opts(toy_data, 2)).stdout
    assert 'AmpOptimWrapper replaced by OptimWrapper' in out
    assert osp.isfile(osp.join(work, 'iter_2.pth')) and 'mIoU' in out

    out = run_tool('tools/train.py', SEG_CFG, '--work-dir', work,
                   '--resume', osp.join(work, 'iter_2.pth'),
                   '--cfg-options', *_seg_opts(toy_data, 4)).stdout
    assert 'resumed epoch: 0, iter: 2' in out
    assert osp.isfile(osp.join(work, 'iter_4.pth'))

    test_dir = str(tmp_path / 'seg_test')
    run_tool('tools/test.py', SEG_CFG, osp.join(work, 'iter_4.pth'), '--work-dir', test_dir,
             '--cfg-options', *_seg_opts(toy_data, 4))
    record = _metrics(test_dir)
    assert record['task'] == 'mmseg' and not record['tta']
    assert 0.0 <= record['metrics']['mIoU'] <= 100.0

    tta_dir = str(tmp_path / 'seg_tta')  # multi-scale + flip through the config's tta_pipeline
    run_tool('tools/test.py', SEG_CFG, osp.join(work, 'iter_4.pth'), '--work-dir', tta_dir,
             '--tta', '--cfg-options', *_seg_opts(toy_data, 4))
    record = _metrics(tta_dir)
    assert record['tta'] and 0.0 <= record['metrics']['mIoU'] <= 100.0
    assert 'SegTTAModel' in open(osp.join(tta_dir, 'config.py')).read()


def test_missing_config_fails_clearly():
    proc = run_tool('tools/train.py', 'det_configs/no_such_config.py', check=False)
    assert proc.returncode != 0 and 'config file not found' in proc.stdout


@pytest.mark.parametrize('script,args,expected', [
    ('tools/slurm_train.sh', ['gpu', 'job', 'CFG.py', 'work', '--amp'],
     ['-p', 'gpu', '--job-name=job', '--gres=gpu:4', '--ntasks=8', '--ntasks-per-node=4',
      '--cpus-per-task=5', '--kill-on-bad-exit=1', '--exclusive', 'PY', '-u', 'train.py',
      'CFG.py', '--work-dir=work', '--amp', '--launcher=slurm']),
    ('tools/slurm_test.sh', ['gpu', 'job', 'CFG.py', 'C.pth', '--tta'],
     ['-p', 'gpu', '--job-name=job', '--gres=gpu:4', '--ntasks=8', '--ntasks-per-node=4',
      '--cpus-per-task=5', '--kill-on-bad-exit=1', '--exclusive', 'PY', '-u', 'test.py',
      'CFG.py', 'C.pth', '--tta', '--launcher=slurm']),
])
def test_slurm_scripts_build_the_srun_line(script, args, expected, tmp_path):
    """No Slurm here: a stand-in `srun` records the command line the scripts build."""
    fake = tmp_path / 'srun'
    fake.write_text('#!/usr/bin/env bash\nfor a in "$@"; do echo "ARG ${a##*/}"; done\n')
    fake.chmod(0o755)
    out = run_tool(script, *args, env={
        'PATH': f'{tmp_path}:{os.environ["PATH"]}', 'GPUS': '8', 'GPUS_PER_NODE': '4',
        'SRUN_ARGS': '--exclusive', 'PYTHON': 'PY'}).stdout
    assert [line[4:] for line in out.splitlines() if line.startswith('ARG ')] == expected
