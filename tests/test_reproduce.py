"""The main job's toy path really trains: a short CPU run of MambaOut-Femto Mask R-CNN on the
toy COCO set must detect the shapes, and lands in the leaderboard as a toy row."""
import csv
import os.path as osp
import re

import pytest

from conftest import run_tool

# Measured with this very command (tools/reproduce.py TOY_SCHEDULE): box AP50 61.3 on the toy
# val set after 4 epochs (58.2 before the schedule sampled 128 RoIs an image instead of 512).
# A model that does not learn stays near 0.
MIN_TOY_AP50 = 25.0


@pytest.mark.slow
def test_toy_run_learns_and_reaches_the_leaderboard(tmp_path):
    args = ['toy', '--skip-complexity', '--only', 'mask-rcnn_mambaout-femto*',
            '--results', tmp_path / 'results', '--data', tmp_path / 'toy',
            '--work-root', tmp_path / 'work']
    out = run_tool('tools/reproduce.py', *args, timeout=1800).stdout
    assert 'toy run 1/1 mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco: training' in out
    assert re.search(r'Epoch\(train\) \[4\]\[\s*\d+/16\]', out)  # progress is visible

    with open(tmp_path / 'results' / 'leaderboard.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    toy = [r for r in rows if r['source'] == 'toy']
    assert len(toy) == 1 and toy[0]['backbone'] == 'MambaOut-Femto' and toy[0]['task'] == 'det'
    assert float(toy[0]['toy_ap_box_50']) >= MIN_TOY_AP50, toy[0]
    assert all(r['ap_box'] == '' for r in rows)  # toy numbers never reach the COCO columns
    assert 'Toy runs' in open(tmp_path / 'results' / 'table2.md').read()
    assert osp.isfile(tmp_path / 'results' / 'ap_vs_macs.png')

    again = run_tool('tools/reproduce.py', *args).stdout  # finished work is not redone
    assert 'done before' in again and 'training' not in again
