"""Tables 2 and 3 as Markdown: published numbers, ours in bold beside them, and the released
checkpoints re-evaluated by the suite in square brackets.

A published row the suite does not measure (no config) whose family has a reason in
``results/unmeasured.csv`` (columns ``family,reason``) gets a footnote saying why; the row's
family comes from the backbone metadata (:mod:`backbones.metadata`).
"""
import csv
import os.path as osp
import re

from ..engine.launch import REPO
from ..metadata import load_rows

__all__ = ['to_markdown', 'UNMEASURED_CSV', 'unmeasured_reasons']

UNMEASURED_CSV = osp.join(REPO, 'results', 'unmeasured.csv')


def unmeasured_reasons(path=None):
    """family -> why the suite does not measure its rows (empty if the file is absent)."""
    path = path or UNMEASURED_CSV
    if not osp.isfile(path):
        return {}
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != ('family', 'reason'):
            raise ValueError(f'{path}: columns must be family,reason, got {reader.fieldnames}')
        return {r['family'].strip(): r['reason'].strip() for r in reader}


def _footnote_id(family):
    return re.sub(r'[^a-z0-9]', '', family.lower()) or 'x'


def _cell(ours, paper, diff, paper_row=False):
    """``paper_row``: the paper prints this row, so an empty published cell is its "-" (e.g.
    TransNeXt's MACs) and ours alone fills it: marked ``(-, ours only)``."""
    if ours in ('', None):
        return str(paper) if paper not in ('', None) else '-'
    if paper in ('', None):
        return f'**{ours}** (-, ours only)' if paper_row else f'**{ours}**'
    return f'**{ours}** ({paper or "-"}, {diff or "n/a"})'


def _release(value, diff):
    """The re-evaluated release, appended to a metric cell: ``[value, diff]``."""
    return '' if value in ('', None) else f' [{value}, {diff or "n/a"}]'


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
             'bold, with the published one and our difference in brackets: **ours** (paper, diff); '
             'where the paper prints "-", ours alone: **ours** (-, ours only). '
             'In square brackets: the checkpoint the authors released, re-evaluated through the '
             "suite's model and test pipeline (`python tools/reproduce.py release`), and its "
             'difference to the published number: [re-evaluated, re-evaluated - published]. '
             'Written by `python tools/leaderboard.py`.', '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    table_rows = [r for r in rows if r['task'] == task and r['source'] != 'toy']
    reasons, family_of = unmeasured_reasons(), {m.backbone: m.family for m in load_rows()}
    notes = {}  # family -> its unmeasured rows, in table order
    for size in ('tiny', 'small', 'base', ''):
        block = [r for r in table_rows if r['size'] == size]
        if not block:
            continue
        lines.append(f'| *{size or "not in the paper"}* |' + ' |' * (len(head) - 1))
        for r in block:
            name = r['backbone'] + (f" (`{r['config']}`)" if r['config'] else '')
            family = family_of.get(r['backbone'])
            if not r['config'] and family in reasons:
                notes.setdefault(family, []).append(r['backbone'])
                name += f'[^{_footnote_id(family)}]'
            paper_row = bool(r['params_m_paper'])  # every row of the paper prints Params
            cells = [name,
                     r['token_mixing'] or '-',
                     _cell(r['params_m'], r['params_m_paper'], r['params_m_diff'], paper_row),
                     _cell(r['macs_g'], r['macs_g_paper'], r['macs_g_diff'], paper_row)]
            cells += [_cell(r[c], r[f'{c}_paper'], r[f'{c}_diff'], paper_row)
                      + _release(r.get(f'{c}_release'), r.get(f'{c}_release_diff'))
                      for _, c in metrics]
            lines.append('| ' + ' | '.join(cells) + ' |')
    if notes:
        lines += ['', 'Rows without a config are not measured; why:', '']
        lines += [f'[^{_footnote_id(fam)}]: {fam} ({", ".join(names)}): {reasons[fam]}.'
                  for fam, names in notes.items()]
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
