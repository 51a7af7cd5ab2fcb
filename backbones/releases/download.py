"""Getting a release file and fixing its checksum.

:func:`download` fetches a plain-HTTP(S) URL with a progress bar into ``DST.part``, continues
an interrupted download with an HTTP ``Range`` request, checks the length the server
announced, and renames the file into place only when it is whole. :func:`record_sha256`
writes a file's sha256 into ``results/releases.csv`` (under a lock, atomically) the first
time a file of that row is verified; the committed manifest has none, so no checksum is ever
guessed. OpenMMLab's model-zoo names end in the first 8 hex digits of the file's sha256,
which :func:`name_hash_prefix` reads so those files are checked even before that.
"""
import csv
import fcntl
import http.client
import io
import os
import os.path as osp
import re
import urllib.error
import urllib.request

from ..engine.fileio import write_file_atomic

__all__ = ['download', 'record_sha256', 'name_hash_prefix', 'DownloadError']


class DownloadError(RuntimeError):
    """A download that did not produce the whole file."""


def name_hash_prefix(file_name):
    """The sha256 prefix an OpenMMLab zoo file name carries (``..._20210902_120937-9d6b7cfa.pth``),
    or None."""
    m = re.search(r'_\d{8}_\d{6}-([0-9a-f]{8})\.pth$', file_name)
    return m[1] if m else None


def _total_from(resp, have):
    """Whole-file size from a 206 (Content-Range) or 200 (Content-Length) answer, or None."""
    if resp.status == 206:
        m = re.match(r'bytes (\d+)-\d+/(\d+|\*)', resp.headers.get('Content-Range', ''))
        if not m or int(m[1]) != have:
            raise DownloadError(f'the server answered the range request from byte {have} with '
                                f'Content-Range {resp.headers.get("Content-Range")!r}')
        return int(m[2]) if m[2] != '*' else None
    length = resp.headers.get('Content-Length')
    return int(length) if length else None


def download(url, dst, progress=True, timeout=60, chunk=1 << 20):
    """Download ``url`` to ``dst`` (resumable through ``dst + '.part'``); returns the number of
    bytes. ``dst`` only ever appears complete."""
    from tqdm import tqdm
    part = dst + '.part'
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    have = osp.getsize(part) if osp.isfile(part) else 0
    headers = {'User-Agent': 'mambaout-bench', **({'Range': f'bytes={have}-'} if have else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch if the part file is whole
            m = re.match(r'bytes \*/(\d+)', err.headers.get('Content-Range', ''))
            if m and int(m[1]) == have:
                os.replace(part, dst)
                return have
            raise DownloadError(f'{url}: the server refused to continue {part} ({have} bytes; '
                                f'Content-Range {err.headers.get("Content-Range")!r}); delete '
                                f'the .part file and run again') from None
        raise DownloadError(f'{url}: HTTP {err.code} {err.reason}') from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f'{url}: {getattr(err, "reason", err)}') from None
    with resp:
        if have and resp.status == 200:  # the server ignored the range: start again
            have = 0
        total = _total_from(resp, have)
        with open(part, 'ab' if have else 'wb') as f, \
                tqdm(total=total, initial=have, unit='B', unit_scale=True, unit_divisor=1024,
                     desc=osp.basename(dst), disable=not progress) as bar:
            try:
                while True:
                    block = resp.read(chunk)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(f'{url}: interrupted after {f.tell()} bytes ({err}); run '
                                    f'again to continue from {part}') from None
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
    if total is not None and size != total:
        raise DownloadError(f'{url}: got {size} of {total} bytes; run again to continue from '
                            f'{part}')
    os.replace(part, dst)
    return size


def record_sha256(manifest, row, task, sha256):
    """Write ``sha256`` into the ``sha256`` cell of (``row``, ``task``) of ``manifest``, which
    must be empty or equal; atomically, under an exclusive lock (two runs at once)."""
    with open(manifest + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(manifest, newline='') as f:
            reader = csv.DictReader(f)
            fields, recs = reader.fieldnames, list(reader)
        hit = [r for r in recs if (r['row'], r['task']) == (row, task)]
        if len(hit) != 1:
            raise KeyError(f'{manifest}: no single row {row!r} ({task})')
        if hit[0]['sha256'] not in ('', sha256):
            raise ValueError(f'{manifest}: {row} ({task}) already has sha256 {hit[0]["sha256"]}, '
                             f'not {sha256}')
        if hit[0]['sha256'] == sha256:
            return False
        hit[0]['sha256'] = sha256
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
        writer.writeheader()
        writer.writerows(recs)
        write_file_atomic(buf.getvalue(), manifest)
    return True
