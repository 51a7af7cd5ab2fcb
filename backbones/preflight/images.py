"""Image files a dataset references: do they exist, decode, and have the size it claims?

mmcv decodes with OpenCV, which turns a truncated JPEG into an image whose lower part is
grey, with a warning on stderr at most: the run trains on it without a word. A missing file
fails only when the sampler draws it, any time in a 12-epoch run. So every file is opened
before the run starts.

The quick check (default) reads the header (format, size) and the end of the file: a JPEG
that was cut short lacks its end-of-image marker, and PIL's ``verify()`` checks every chunk
checksum of a PNG. ``full=True`` decodes every image as well (about 5 ms per COCO image,
on all cores).
"""
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

__all__ = ['probe_image', 'probe_images', 'map_files', 'summarise_probes', 'PROGRESS_ABOVE']

#: A progress bar is shown for sets larger than this (full COCO: 118k images).
PROGRESS_ABOVE = 2000
_JPEG_END = b'\xff\xd9'
_TAIL = 256  # bytes read at the end; encoders may pad a few bytes after the marker


def _jpeg_complete(path):
    with open(path, 'rb') as f:
        f.seek(max(0, osp.getsize(path) - _TAIL))
        return _JPEG_END in f.read()


def probe_image(path, full=False):
    """``(path, (width, height), None)``, or ``(path, None, reason)`` if the file is
    missing or cannot be decoded."""
    from PIL import Image
    if not osp.isfile(path):
        return path, None, 'missing'
    try:
        with Image.open(path) as img:
            size, kind = img.size, img.format
            if full:
                img.load()
            elif kind == 'PNG':
                img.verify()
        if kind == 'JPEG' and not _jpeg_complete(path):
            return path, None, 'truncated (no JPEG end-of-image marker)'
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... by format
        return path, None, f'cannot be decoded ({type(err).__name__}: {err})'
    return path, size, None


def map_files(fn, items, desc, progress=True):
    """``fn`` over ``items`` on a thread pool (the work is file I/O), in order, with a
    progress bar for large sets."""
    workers = min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, items)
        if progress and len(items) > PROGRESS_ABOVE:
            from tqdm import tqdm
            results = tqdm(results, total=len(items), desc=desc, unit='file', mininterval=2)
        return list(results)


def probe_images(paths, full=False, progress=True, desc='checking images'):
    """:func:`probe_image` of every path (threaded)."""
    return map_files(lambda p: probe_image(p, full), list(paths), desc, progress)


def _examples(items, limit=3):
    return '; '.join(items[:limit]) + (f'; ... ({len(items) - limit} more)'
                                       if len(items) > limit else '')


def summarise_probes(probes, where, expected_sizes=None):
    """Problems of a list of probes, counted by kind with examples.

    ``expected_sizes``: ``{path: (width, height)}`` the annotations claim; an image of
    another size would be paired with boxes or masks drawn for a different picture.
    """
    missing = [p for p, _, why in probes if why == 'missing']
    broken = [f'{osp.basename(p)}: {why}' for p, _, why in probes if why not in (None, 'missing')]
    problems = []
    if missing:
        problems.append(f'{where}: {len(missing)} of {len(probes)} images do not exist, '
                        f'e.g. {_examples(missing)}')
    if broken:
        problems.append(f'{where}: {len(broken)} of {len(probes)} images are truncated or '
                        f'unreadable: {_examples(broken)}')
    if expected_sizes:
        wrong = [f'{osp.basename(p)} is {size[0]}x{size[1]}, the annotations say '
                 f'{expected_sizes[p][0]}x{expected_sizes[p][1]}'
                 for p, size, why in probes
                 if why is None and p in expected_sizes and tuple(size) != expected_sizes[p]]
        if wrong:
            problems.append(f'{where}: {len(wrong)} images differ in size from their '
                            f'annotation entry (width x height): {_examples(wrong)}')
    return problems
