"""What ``--resume`` continues from, and the clean-up of writes a kill interrupted."""
import os
import os.path as osp

__all__ = ['find_resume_checkpoint', 'remove_partial_writes']


def find_resume_checkpoint(work_dir, log=print):
    """The checkpoint ``--resume`` (no path) continues from, or None to start afresh.

    mmengine reads ``last_checkpoint`` only; a crash while that small file is rewritten
    leaves it empty. Checkpoint files themselves are written atomically, so the newest
    ``epoch_N.pth`` / ``iter_N.pth`` is complete and is taken instead (and said so).
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        for candidate in (named, osp.join(work_dir, osp.basename(named or ''))):
            if named and osp.isfile(candidate):
                return candidate
    found = []
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            stem, ext = osp.splitext(name)
            kind, _, number = stem.partition('_')
            if ext == '.pth' and kind in ('epoch', 'iter') and number.isdigit():
                found.append((int(number), osp.join(work_dir, name)))
    if not found:
        if named is not None:
            log(f'warning: {pointer} names {named!r}, which does not exist, and the work '
                f'dir holds no epoch_N/iter_N checkpoint: starting from scratch')
        return None
    newest = max(found)[1]
    log(f'warning: {pointer} is ' + (f'unusable ({named!r})' if named is not None
                                      else 'missing') + f'; resuming from {newest}')
    return newest


def remove_partial_writes(work_dir, log=print):
    """Delete the temp files of checkpoint writes that a kill interrupted. Only called when
    resuming, when no other process writes into ``work_dir``."""
    if not osp.isdir(work_dir):
        return []
    stale = [f for f in os.listdir(work_dir) if f.startswith('.') and f.endswith('.part')]
    for name in stale:
        os.remove(osp.join(work_dir, name))
    if stale:
        log(f'removed {len(stale)} unfinished checkpoint write(s) in {work_dir}: '
            f'{", ".join(stale[:3])}')
    return stale
