"""AP box (Table 2) and mIoU (Table 3) against MACs, one line per backbone family; released
checkpoints re-evaluated by the suite are marked with a cross in their family's colour."""
import io

from ..metadata import family_styles

__all__ = ['plot']


def _family(name, families):
    for family in sorted(families, key=len, reverse=True):
        if name.startswith(family + '-'):
            return family
    return 'other'


def plot(rows):
    """AP box (Table 2) and mIoU (Table 3) against MACs per backbone family, as PNG bytes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    styles = family_styles()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, task, metric, label in ((axes[0], 'det', 'ap_box', 'COCO AP$^b$ (Mask R-CNN 1x)'),
                                    (axes[1], 'seg', 'miou_ss', 'ADE20K mIoU (UperNet 160k)')):
        by_family, released = {}, []
        for r in rows:
            if r['task'] != task or r['source'] == 'toy':
                continue
            for ours in (False, True):
                y = r[metric] if ours else r[f'{metric}_paper']
                x = (r['macs_g'] or r['macs_g_paper']) if ours else r['macs_g_paper']
                if y in ('', None) or x in ('', None):
                    continue
                by_family.setdefault((_family(r['backbone'], styles), ours), []).append(
                    (float(x), float(y), r['backbone']))
            y, x = r.get(f'{metric}_release'), r['macs_g'] or r['macs_g_paper']
            if y not in ('', None) and x not in ('', None):
                released.append((float(x), float(y), _family(r['backbone'], styles)))
        for (family, ours), pts in sorted(by_family.items()):
            colour, marker = styles.get(family, ('0.6', '.'))
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour,
                    linestyle='-' if family != 'other' else 'none',
                    markerfacecolor='none' if ours else colour,
                    label=f"{family}{' (ours)' if ours else ''}")
        for i, (x, y, family) in enumerate(released):
            ax.plot([x], [y], marker='x', markersize=8, linestyle='none',
                    color=styles.get(family, ('0.6', '.'))[0],
                    label='released checkpoint, re-evaluated' if i == 0 else None)
        ax.set_xlabel('MACs (G)')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=120)
    plt.close(fig)
    return buf.getvalue()
