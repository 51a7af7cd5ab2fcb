"""The one atomic writer of the suite, and the ``atomic_local`` file backend built on it.

Checkpoints, metrics records, the leaderboard, tables, benchmark records and converted
weights are all written through :func:`write_file_atomic`: a reader, or a process killed at
any moment, sees the old file or the whole new one, never part of one.
"""
import os
import os.path as osp
import tempfile

from mmengine.fileio import LocalBackend, register_backend

__all__ = ['write_file_atomic', 'AtomicLocalBackend']


def write_file_atomic(data, path):
    """Write ``data`` to ``path`` atomically: temp file beside it, fsync, rename, fsync of
    the folder. ``data``: bytes, str, or a callable that writes into a binary file object
    (e.g. ``lambda f: torch.save(obj, f)``)."""
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.part')
    try:
        with os.fdopen(fd, 'w' if isinstance(data, str) else 'wb') as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:  # make the rename itself survive a power cut
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put``: a checkpoint written by
    ``CheckpointHook`` appears under its name only once complete. Select it with
    ``default_hooks.checkpoint.backend_args=dict(backend='atomic_local')`` (our bases do)."""

    def put(self, obj, filepath):
        write_file_atomic(obj, filepath)

    def put_text(self, obj, filepath, encoding='utf-8'):
        write_file_atomic(obj.encode(encoding), filepath)


register_backend('atomic_local', AtomicLocalBackend, force=True)
