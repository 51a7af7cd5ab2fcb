"""One run per work dir: a lock file held for the run's whole lifetime.

Two runs in one work dir write the same ``epoch_N.pth``, ``last_checkpoint`` and dumped
config, each overwriting the other's without a word. ``tools/train.py`` and
``tools/test.py`` therefore take ``WORK_DIR/run.lock`` before anything is written there,
and refuse to start while another live process holds it, naming that process.

* The lock file appears whole or not at all (written beside it, then hard-linked into
  place, which fails when the name exists), so a reader never sees half a holder.
* It is removed on every exit path a process survives: normal end, exception,
  ``SystemExit`` (the clean SIGTERM / Ctrl-C stop), a second Ctrl-C.
* A holder killed with SIGKILL leaves the file behind. It is stale when no process with
  its pid runs on this host any more, or when one does but started at another time (a
  reused pid); the next run says so and takes the lock over.
* A holder on another host (a shared file system) cannot be probed: the run is refused
  and the message says how to remove the lock by hand once that run is known to be gone.
* Multi-process runs take it once, on global rank 0; the other ranks never touch it.
"""
import datetime
import json
import os
import os.path as osp
import socket
import sys
import tempfile

__all__ = ['LOCK_NAME', 'WorkDirLocked', 'WorkDirLock', 'check_unlocked', 'read_lock',
           'process_start']

LOCK_NAME = 'run.lock'
_GUARD = '.run.lock.guard'


class WorkDirLocked(RuntimeError):
    """The work dir is in use by another live run."""


def process_start(pid):
    """Start time of process ``pid`` in clock ticks since boot (Linux), None when there is
    no such process; ``-1`` where the platform cannot tell (the pid then decides alone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return -1 if _pid_alive(pid) else None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return int(stat.rsplit(')', 1)[1].split()[19])


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _boot_time():
    try:
        with open('/proc/stat') as f:
            return next(int(line.split()[1]) for line in f if line.startswith('btime '))
    except (OSError, StopIteration, ValueError):
        return None


def _start_iso(ticks):
    boot = _boot_time()
    if ticks is None or ticks < 0 or boot is None:
        return None
    seconds = boot + ticks / os.sysconf('SC_CLK_TCK')
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec='seconds')


def _me(tool):
    ticks = process_start(os.getpid())
    return dict(pid=os.getpid(), host=socket.gethostname(), start_ticks=ticks,
                started=_start_iso(ticks) or datetime.datetime.now().astimezone().isoformat(
                    timespec='seconds'),
                tool=tool, command=' '.join([osp.basename(sys.executable)] + sys.argv))


def read_lock(work_dir):
    """The holder recorded in ``work_dir``'s lock file, None when there is none; a file
    that is not a lock we wrote reads as ``{'unreadable': reason}``."""
    path = osp.join(work_dir, LOCK_NAME)
    try:
        with open(path) as f:
            holder = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        return {'unreadable': f'{type(err).__name__}: {err}'}
    if not isinstance(holder, dict) or not isinstance(holder.get('pid'), int):
        return {'unreadable': f'no pid in {str(holder)[:80]}'}
    return holder


def _is_live(holder):
    """True / False; None when the holder runs on another host (cannot be probed)."""
    if 'unreadable' in holder:
        return True  # never guess: a file we cannot read is not ours to delete
    if holder.get('host') != socket.gethostname():
        return None
    ticks = process_start(holder['pid'])
    if ticks is None:
        return False
    recorded = holder.get('start_ticks')
    return ticks == -1 or recorded in (None, -1) or ticks == recorded


def _describe(holder):
    if 'unreadable' in holder:
        return f'a lock file this suite cannot read ({holder["unreadable"]})'
    return (f'pid {holder["pid"]} on {holder.get("host", "?")}, started '
            f'{holder.get("started", "?")} ({holder.get("tool", "?")}: '
            f'{str(holder.get("command", ""))[:200]})')


def _refusal(work_dir, holder, live):
    path = osp.join(work_dir, LOCK_NAME)
    who = _describe(holder)
    if live is None:
        how = (f'it runs on another host, so this one cannot tell whether it is still '
               f'running. Wait for it, or use another --work-dir; if that run is gone '
               f'(its machine crashed), delete {path} and start again')
    elif 'unreadable' in holder:
        how = (f'use another --work-dir, or delete {path} if no run uses {work_dir}')
    else:
        how = (f'wait for it to finish, stop it (kill -TERM {holder["pid"]}: a training '
               f'run saves and prints how to resume), or use another --work-dir')
    return WorkDirLocked(f'work dir {work_dir} is in use by another run: {who}. Two runs in '
                         f'one work dir overwrite each other\'s checkpoints and config; {how}.')


def check_unlocked(work_dir):
    """Raise :class:`WorkDirLocked` if a live run holds ``work_dir``; writes nothing (so it
    can run before the pre-flight, which may take minutes on a full dataset)."""
    holder = read_lock(work_dir)
    if holder is None:
        return
    live = _is_live(holder)
    if live is not False:
        raise _refusal(work_dir, holder, live)


class WorkDirLock:
    """``with WorkDirLock(work_dir, 'train'):`` the run's lifetime; see the module doc.

    ``log``: where the note about a stale lock taken over goes.
    """

    def __init__(self, work_dir, tool='train', log=print):
        self.work_dir, self.tool, self.log = work_dir, tool, log
        self.path = osp.join(work_dir, LOCK_NAME)
        self.held = None

    def acquire(self):
        os.makedirs(self.work_dir, exist_ok=True)
        me = _me(self.tool)
        fd, tmp = tempfile.mkstemp(dir=self.work_dir, prefix='.run.lock.', suffix='.part')
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(me, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            for _ in range(3):
                try:
                    os.link(tmp, self.path)  # atomic: fails if a lock exists
                    self.held = me
                    return self
                except FileExistsError:
                    self._take_over_if_stale()
            raise WorkDirLocked(f'could not take {self.path}: other runs keep taking it')
        finally:
            os.unlink(tmp)

    def _take_over_if_stale(self):
        """Remove the lock file if its holder is gone; raise if it is alive. The guard
        (flock, same host) makes two runs that both found it stale remove it once."""
        import fcntl
        with open(osp.join(self.work_dir, _GUARD), 'a') as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            holder = read_lock(self.work_dir)
            if holder is None:
                return
            live = _is_live(holder)
            if live is not False:
                raise _refusal(self.work_dir, holder, live)
            os.unlink(self.path)
            self.log(f'warning: removed a stale lock in {self.work_dir}: {_describe(holder)} '
                     f'is no longer running (killed?); this run takes the work dir over')

    def release(self):
        if self.held is None:
            return
        holder = read_lock(self.work_dir)
        if holder and holder.get('pid') == os.getpid() and \
                holder.get('start_ticks') == self.held['start_ticks']:
            os.unlink(self.path)
        self.held = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
