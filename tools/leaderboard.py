"""Collect finished runs into the leaderboard: CSV, Tables 2 and 3 as Markdown, and a plot.

    python tools/leaderboard.py [--runs results/runs] [--complexity results/complexity.csv]
                                [--out results]

Inputs:
* ``results/paper/table{2,3}_*.csv``: the paper's published numbers;
* ``--complexity``: our measured Params / MACs per config (``tools/get_flops.py --all``);
* ``--runs``: one folder per run, each with the ``metrics.json`` that ``tools/test.py`` writes.
  A folder with a missing or corrupt ``metrics.json`` is reported and skipped, never filled in.

Outputs (each written atomically): ``leaderboard.csv``, ``table2.md``, ``table3.md``,
``ap_vs_macs.png``. Runs on the toy datasets are labelled ``toy`` and only fill the ``toy_*``
columns, so they never mix with COCO / ADE20K numbers.
"""
import argparse
import csv
import io
import json
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAPER = {'det': osp.join(REPO, 'results', 'paper', 'table2_coco_mask_rcnn_1x.csv'),
         'seg': osp.join(REPO, 'results', 'paper', 'table3_ade20k_upernet_160k.csv')}

# (backbone type, arch) -> (size block in the paper's tables, row name)
BACKBONE_ROWS = {
    ('MambaOut', 'femto'): ('', 'MambaOut-Femto'),
    ('MambaOut', 'kobe'): ('', 'MambaOut-Kobe'),
    ('MambaOut', 'tiny'): ('tiny', 'MambaOut-Tiny'),
    ('MambaOut', 'small'): ('small', 'MambaOut-Small'),
    ('MambaOut', 'base'): ('base', 'MambaOut-Base'),
    ('VMamba', 'v0-tiny'): ('tiny', 'VMamba-T'),
    ('VMamba', 'v0-small'): ('small', 'VMamba-S'),
    ('VMamba', 'v0-base'): ('base', 'VMamba-B'),
    ('VMamba', 'v2-tiny'): ('tiny', 'VMambaV9-T'),
    ('VMamba', 'v2-small'): ('small', 'VMambaV9-S'),
    ('VMamba', 'v2-base'): ('base', 'VMambaV9-B'),
}
TOKEN_MIXING = {'MambaOut': 'Conv', 'VMamba': 'Conv+SSM'}

# metric columns: name -> (task, key in mmdet/mmseg metrics, scale to the paper's units)
DET_METRICS = {'ap_box': 'coco/bbox_mAP', 'ap_box_50': 'coco/bbox_mAP_50',
               'ap_box_75': 'coco/bbox_mAP_75', 'ap_mask': 'coco/segm_mAP',
               'ap_mask_50': 'coco/segm_mAP_50', 'ap_mask_75': 'coco/segm_mAP_75'}
SEG_METRICS = {'miou': 'mIoU'}
METRIC_COLS = list(DET_METRICS) + ['miou_ss', 'miou_ms']
TOY_COLS = ['toy_ap_box', 'toy_ap_box_50', 'toy_ap_mask', 'toy_miou']

COLUMNS = (['task', 'size', 'backbone', 'token_mixing', 'source', 'config',
            'params_m', 'macs_g', 'params_m_paper', 'macs_g_paper', 'params_m_diff', 'macs_g_diff']
           + [c for m in METRIC_COLS for c in (m, f'{m}_paper', f'{m}_diff')]
           + TOY_COLS + ['gpus', 'schedule', 'date', 'run'])


class RunError(ValueError):
    """A run folder that cannot be used (reported and skipped)."""


# ---- inputs ---------------------------------------------------------------------------
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


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunError(f'{what} is {value!r}, not a number')
    if value != value or value in (float('inf'), float('-inf')):
        raise RunError(f'{what} is not finite')
    return float(value)


def load_run(folder):
    """Parse and validate ``folder/metrics.json``; raise RunError with the reason."""
    path = osp.join(folder, 'metrics.json')
    if not osp.isfile(path):
        raise RunError('no metrics.json')
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError) as err:
        raise RunError(f'metrics.json is not valid JSON ({err})') from None
    if not isinstance(rec, dict) or not isinstance(rec.get('metrics'), dict):
        raise RunError("metrics.json has no 'metrics' object")
    task = {'mmdet': 'det', 'mmseg': 'seg'}.get(rec.get('task'))
    if task is None:
        raise RunError(f"metrics.json task is {rec.get('task')!r}, not mmdet / mmseg")
    needed = DET_METRICS if task == 'det' else SEG_METRICS
    values = {}
    for col, key in needed.items():
        if key not in rec['metrics']:
            raise RunError(f'metrics.json lacks {key}')
        values[col] = _number(rec['metrics'][key], key)
    # mmdet reports AP in [0, 1], the paper in percent; mmseg's mIoU is already percent.
    values = {c: round(v * 100, 1) if task == 'det' else round(v, 2) for c, v in values.items()}
    backbone = rec.get('backbone') or {}
    key = (backbone.get('type'), backbone.get('arch'))
    size, name = BACKBONE_ROWS.get(key, ('', backbone.get('model_name') or
                                         '-'.join(str(k) for k in key if k) or 'unknown'))
    return dict(task=task, size=size, backbone=name, values=values, tta=bool(rec.get('tta')),
                toy=bool(rec.get('toy')), config=osp.basename(str(rec.get('config', ''))),
                gpus=rec.get('world_size', ''), schedule=rec.get('schedule', ''),
                date=str(rec.get('date', '')), run=osp.basename(folder.rstrip('/')),
                token_mixing=TOKEN_MIXING.get(key[0], ''))


def collect_runs(runs_dir, log=print):
    runs = []
    if not osp.isdir(runs_dir):
        log(f'[leaderboard] no runs folder {runs_dir}: published numbers only')
        return runs
    for name in sorted(os.listdir(runs_dir)):
        folder = osp.join(runs_dir, name)
        if not osp.isdir(folder):
            continue
        try:
            runs.append(load_run(folder))
        except RunError as err:
            log(f'[leaderboard] skipped run {name}: {err}')
    return runs


# ---- the table ------------------------------------------------------------------------
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
            row.update(task=task, backbone=name, config=config, source='ours')
            rows.append(row)
            by_key[(task, name)] = row
    for run in sorted(runs, key=lambda r: r['date']):  # the latest run of a row wins
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
    for row in rows:
        _fill_complexity(row, complexity)
        for col in METRIC_COLS:
            row[f'{col}_diff'] = _diff(row[col], row[f'{col}_paper'])
    return rows


# ---- writers ----------------------------------------------------------------------------
def write_atomic(path, data):
    """Readers and crashes see the old file or the new one, never half of one (bytes or
    str). See backbones.checkpoint."""
    from backbones.checkpoint import write_file_atomic
    write_file_atomic(data, path)


def to_csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _cell(ours, paper, diff):
    if ours in ('', None):
        return str(paper) if paper not in ('', None) else '-'
    return f'**{ours}** ({paper or "-"}, {diff or "n/a"})' if paper not in ('', None) else f'**{ours}**'


def to_markdown(rows, task):
    if task == 'det':
        title = 'Table 2: Mask R-CNN 1x on COCO val2017 (Params and MACs at 800x1280)'
        metrics = [('AP^b', 'ap_box'), ('AP^b_50', 'ap_box_50'), ('AP^b_75', 'ap_box_75'),
                   ('AP^m', 'ap_mask'), ('AP^m_50', 'ap_mask_50'), ('AP^m_75', 'ap_mask_75')]
        toy = [('toy AP^b', 'toy_ap_box'), ('toy AP^b_50', 'toy_ap_box_50'),
               ('toy AP^m', 'toy_ap_mask')]
    else:
        title = 'Table 3: UperNet 160k on ADE20K val (Params and MACs at 512x2048)'
        metrics = [('mIoU (SS)', 'miou_ss'), ('mIoU (MS)', 'miou_ms')]
        toy = [('toy mIoU', 'toy_miou')]
    head = ['Backbone', 'Token mixing', 'Params (M)', 'MACs (G)'] + [m[0] for m in metrics]
    lines = [f'# {title}', '',
             'Published numbers as printed in the paper. Where we measured a value it is shown in '
             'bold, with the published one and our difference in brackets: **ours** (paper, diff). '
             'Written by `python tools/leaderboard.py`.', '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    table_rows = [r for r in rows if r['task'] == task and r['source'] != 'toy']
    for size in ('tiny', 'small', 'base', ''):
        block = [r for r in table_rows if r['size'] == size]
        if not block:
            continue
        lines.append(f'| *{size or "not in the paper"}* |' + ' |' * (len(head) - 1))
        for r in block:
            cells = [r['backbone'] + (f" (`{r['config']}`)" if r['config'] else ''),
                     r['token_mixing'] or '-',
                     _cell(r['params_m'], r['params_m_paper'], r['params_m_diff']),
                     _cell(r['macs_g'], r['macs_g_paper'], r['macs_g_diff'])]
            cells += [_cell(r[c], r[f'{c}_paper'], r[f'{c}_diff']) for _, c in metrics]
            lines.append('| ' + ' | '.join(cells) + ' |')
    toy_rows = [r for r in rows if r['task'] == task and r['source'] == 'toy']
    if toy_rows:
        lines += ['', '## Toy runs (CPU, toy dataset from tools/make_toy_data.py: '
                  'checks that the pipeline learns, not comparable with the table above)', '',
                  '| Backbone | ' + ' | '.join(t[0] for t in toy) + ' | schedule | date |',
                  '|' + '---|' * (len(toy) + 3)]
        for r in toy_rows:
            lines.append(f"| {r['backbone']} | " + ' | '.join(str(r[c] or '-') for _, c in toy)
                         + f" | {r['schedule']} | {r['date']} |")
    return '\n'.join(lines) + '\n'


FAMILY_STYLE = {'MambaOut': ('tab:red', 'o'), 'VMambaV9': ('tab:blue', 's'),
                'VMamba': ('tab:cyan', 's'), 'LocalVMamba': ('tab:purple', '^'),
                'EfficientVMamba': ('tab:olive', 'v'), 'PlainMamba': ('tab:brown', 'D')}


def _family(name):
    for family in sorted(FAMILY_STYLE, key=len, reverse=True):
        if name.startswith(family + '-'):
            return family
    return 'other'


def plot(rows):
    """AP box (Table 2) and mIoU (Table 3) against MACs per backbone family, as PNG bytes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, task, metric, label in ((axes[0], 'det', 'ap_box', 'COCO AP$^b$ (Mask R-CNN 1x)'),
                                    (axes[1], 'seg', 'miou_ss', 'ADE20K mIoU (UperNet 160k)')):
        by_family = {}
        for r in rows:
            if r['task'] != task or r['source'] == 'toy':
                continue
            for ours in (False, True):
                y = r[metric] if ours else r[f'{metric}_paper']
                x = (r['macs_g'] or r['macs_g_paper']) if ours else r['macs_g_paper']
                if y in ('', None) or x in ('', None):
                    continue
                by_family.setdefault((_family(r['backbone']), ours), []).append(
                    (float(x), float(y), r['backbone']))
        for (family, ours), pts in sorted(by_family.items()):
            colour, marker = FAMILY_STYLE.get(family, ('0.6', '.'))
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour,
                    linestyle='-' if family != 'other' else 'none',
                    markerfacecolor='none' if ours else colour,
                    label=f"{family}{' (ours)' if ours else ''}")
        ax.set_xlabel('MACs (G)')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=120)
    plt.close(fig)
    return buf.getvalue()


def configs_by_row():
    """(task, paper row name) -> our config file name, from the config file names."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from check_configs import find_configs
    from mmengine.config import Config
    found = {}
    for folder, task in (('det_configs', 'det'), ('seg_configs', 'seg')):
        for path in find_configs([osp.join(REPO, folder)]):
            backbone = Config.fromfile(path, import_custom_modules=False).model.backbone
            key = (backbone.get('type'), backbone.get('arch'))
            if key in BACKBONE_ROWS:
                found[(task, BACKBONE_ROWS[key][1])] = osp.basename(path)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', default=osp.join(REPO, 'results', 'runs'))
    parser.add_argument('--complexity', default=osp.join(REPO, 'results', 'complexity.csv'))
    parser.add_argument('--out', default=osp.join(REPO, 'results'))
    args = parser.parse_args(argv)
    runs = collect_runs(args.runs)
    rows = build_rows(read_paper(), runs, read_complexity(args.complexity), configs_by_row())
    write_atomic(osp.join(args.out, 'leaderboard.csv'), to_csv(rows))
    write_atomic(osp.join(args.out, 'table2.md'), to_markdown(rows, 'det'))
    write_atomic(osp.join(args.out, 'table3.md'), to_markdown(rows, 'seg'))
    write_atomic(osp.join(args.out, 'ap_vs_macs.png'), plot(rows))
    print(f'[leaderboard] {len(runs)} runs, {len(rows)} rows -> '
          f"{osp.join(args.out, 'leaderboard.csv')}, table2.md, table3.md, ap_vs_macs.png")


if __name__ == '__main__':
    main()
