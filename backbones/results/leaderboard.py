"""The leaderboard: the paper's published rows merged with our measurements.

Inputs: ``results/paper/table{2,3}_*.csv`` (the published numbers), our measured Params /
MACs (``results/complexity.csv``), the run records (:mod:`.runs`) and the backbone metadata
(:mod:`backbones.metadata`). Runs on the toy datasets only fill the ``toy_*`` columns of
rows of their own, so they never mix with COCO / ADE20K numbers. A released checkpoint
re-evaluated by ``tools/reproduce.py release`` (record ``source: release``) fills the third
value of its row, ``<metric>_release`` and ``<metric>_release_diff`` (re-evaluated minus
published; where the paper's cell is empty, minus the number the release published for that
column, results/releases.csv), beside the published and the retrained ones; a release
evaluated on toy data is a pipeline check and is left out.
"""
import csv
import io
import os.path as osp

from ..engine.fileio import write_file_atomic
from ..engine.launch import REPO
from ..metadata import RELEASES_CSV, load_releases, load_rows, row_for_config
from .plot import plot
from .runs import DET_METRICS, collect_runs
from .tables import to_markdown

__all__ = ['COLUMNS', 'PAPER', 'read_paper', 'read_complexity', 'configs_by_row',
           'build_rows', 'to_csv', 'write_leaderboard']

PAPER = {'det': osp.join(REPO, 'results', 'paper', 'table2_coco_mask_rcnn_1x.csv'),
         'seg': osp.join(REPO, 'results', 'paper', 'table3_ade20k_upernet_160k.csv')}
METRIC_COLS = list(DET_METRICS) + ['miou_ss', 'miou_ms']
TOY_COLS = ['toy_ap_box', 'toy_ap_box_50', 'toy_ap_mask', 'toy_miou']

COLUMNS = (['task', 'size', 'backbone', 'token_mixing', 'source', 'config',
            'params_m', 'macs_g', 'params_m_paper', 'macs_g_paper', 'params_m_diff', 'macs_g_diff']
           + [c for m in METRIC_COLS for c in (m, f'{m}_paper', f'{m}_diff')]
           + [c for m in METRIC_COLS for c in (f'{m}_release', f'{m}_release_diff')]
           + ['release_run'] + TOY_COLS + ['gpus', 'schedule', 'date', 'run'])


def read_paper():
    rows = []
    for task, path in PAPER.items():
        with open(path, newline='') as f:
            for rec in csv.DictReader(f):
                rows.append(dict(rec, task=task))
    return rows


def read_complexity(path):
    """config basename -> {'params_m', 'macs_g'} (empty when the file does not exist)."""
    if not path or not osp.isfile(path):
        return {}
    with open(path, newline='') as f:
        return {r['config']: r for r in csv.DictReader(f)}


def configs_by_row():
    """(task, row name) -> our config file name, from the backbone metadata."""
    return {(task, row.backbone): row.config(task) for row in load_rows()
            for task in ('det', 'seg') if row.config(task)}


def _diff(ours, paper):
    try:
        return f'{float(ours) - float(paper):+.1f}'
    except (TypeError, ValueError):
        return ''


def _fill_complexity(row, complexity):
    comp = complexity.get(row['config'])
    if comp:
        row['params_m'], row['macs_g'] = comp['params_m'], comp['macs_g']
    row['params_m_diff'] = _diff(row['params_m'], row['params_m_paper'])
    row['macs_g_diff'] = _diff(row['macs_g'], row['macs_g_paper'])


def build_rows(paper, runs, complexity, configs_by_row):
    """Published rows, merged with our measurements; toy runs as rows of their own."""
    rows, by_key = [], {}
    for rec in paper:
        row = dict.fromkeys(COLUMNS, '')
        row.update(task=rec['task'], size=rec['size'], backbone=rec['backbone'],
                   token_mixing=rec['token_mixing'], source='published',
                   params_m_paper=rec['params_m'], macs_g_paper=rec['macs_g'])
        for col in METRIC_COLS + ['miou']:
            if rec.get(col) not in (None, ''):
                row[f'{col}_paper'] = rec[col]
        row['config'] = configs_by_row.get((rec['task'], rec['backbone']), '')
        rows.append(row)
        by_key[(rec['task'], rec['backbone'])] = row
    # Our configs that have no published row (e.g. MambaOut-Femto) still get their complexity.
    for (task, name), config in sorted(configs_by_row.items()):
        if (task, name) not in by_key:
            row = dict.fromkeys(COLUMNS, '')
            meta = row_for_config(config)
            row.update(task=task, backbone=name, config=config, source='ours',
                       size=meta.size if meta else '',
                       token_mixing=meta.token_mixing if meta else '')
            rows.append(row)
            by_key[(task, name)] = row
    for run in sorted(runs, key=lambda r: r['date']):  # the latest run of a row wins
        if run.get('source') == 'release':
            if not run['toy']:  # on toy data a release run only checks the pipeline
                _fill_release(rows, by_key, run)
            continue
        if run['toy']:
            key = (run['task'], run['backbone'], 'toy')
            if key not in by_key:
                row = dict.fromkeys(COLUMNS, '')
                row.update(task=run['task'], size=run['size'], backbone=run['backbone'],
                           token_mixing=run['token_mixing'], source='toy')
                rows.append(row)
                by_key[key] = row
            row = by_key[key]
            v = run['values']
            if run['task'] == 'det':
                row.update(toy_ap_box=v['ap_box'], toy_ap_box_50=v['ap_box_50'],
                           toy_ap_mask=v['ap_mask'])
            else:
                row['toy_miou'] = v['miou']
        else:
            key = (run['task'], run['backbone'])
            if key not in by_key:
                row = dict.fromkeys(COLUMNS, '')
                row.update(task=run['task'], size=run['size'], backbone=run['backbone'],
                           token_mixing=run['token_mixing'])
                rows.append(row)
                by_key[key] = row
            row = by_key[key]
            row['source'] = 'measured'
            if run['task'] == 'det':
                row.update(run['values'])
            else:
                row['miou_ms' if run['tta'] else 'miou_ss'] = run['values']['miou']
        row.update(config=run['config'] or row['config'], gpus=run['gpus'],
                   schedule=run['schedule'], date=run['date'], run=run['run'])
    published = _release_published()
    for row in rows:
        _fill_complexity(row, complexity)
        for col in METRIC_COLS:
            row[f'{col}_diff'] = _diff(row[col], row[f'{col}_paper'])
            ref = row[f'{col}_paper'] if row[f'{col}_paper'] != '' else \
                published.get((row['task'], row['backbone']), {}).get(col, '')
            row[f'{col}_release_diff'] = _diff(row[f'{col}_release'], ref)
    return rows


def _release_published():
    """(task, row) -> the metrics its release published (results/releases.csv)."""
    if not osp.isfile(RELEASES_CSV):
        return {}
    return {(r.task, r.row): r.metrics for r in load_releases()}


def _fill_release(rows, by_key, run):
    key = (run['task'], run['backbone'])
    if key not in by_key:
        row = dict.fromkeys(COLUMNS, '')
        row.update(task=run['task'], size=run['size'], backbone=run['backbone'],
                   token_mixing=run['token_mixing'], source='release')
        rows.append(row)
        by_key[key] = row
    row = by_key[key]
    if run['task'] == 'det':
        row.update({f'{c}_release': v for c, v in run['values'].items()})
    else:
        row['miou_ms_release' if run['tta'] else 'miou_ss_release'] = run['values']['miou']
    runs = [r for r in row['release_run'].split(';') if r] + [run['run']]
    row['release_run'] = ';'.join(sorted(set(runs)))


def to_csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_leaderboard(runs_dir, complexity_csv, out_dir, log=print, strict=False):
    """Collect ``runs_dir`` and write ``leaderboard.csv``, ``table2.md``, ``table3.md`` and
    ``ap_vs_macs.png`` into ``out_dir``, each atomically. Returns (runs, rows).

    Every record passes the schema (:mod:`.schema`); one that fails is listed and left out,
    or, with ``strict``, is an error (SystemExit naming each) and nothing is written."""
    skipped = []
    runs = collect_runs(runs_dir, log=log, skipped=skipped)
    if strict and skipped:
        raise SystemExit(f'error: --strict: {len(skipped)} run records in {runs_dir} cannot '
                         f'be used; nothing was written:\n' + '\n'.join(
                             f'  - {name}: {why}' for name, why in skipped))
    rows = build_rows(read_paper(), runs, read_complexity(complexity_csv), configs_by_row())
    write_file_atomic(to_csv(rows), osp.join(out_dir, 'leaderboard.csv'))
    write_file_atomic(to_markdown(rows, 'det'), osp.join(out_dir, 'table2.md'))
    write_file_atomic(to_markdown(rows, 'seg'), osp.join(out_dir, 'table3.md'))
    write_file_atomic(plot(rows), osp.join(out_dir, 'ap_vs_macs.png'))
    return runs, rows
