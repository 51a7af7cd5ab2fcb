"""Image files a dataset references: do they exist, decode, and have the size it claims, in
the orientation the loader will give them?

A JPEG cut short fails mmcv's loader ("failed to load image": OpenCV 4.x decodes nothing
from it; older OpenCV gave an image with its lower part grey, without a word), and a
missing file fails too, each only when the sampler draws it, any time in a 12-epoch run.
So every file is opened before the run starts.

The quick check (default) reads the header (format, size, EXIF orientation) and the end of
the file: a JPEG that was cut short lacks its end-of-image marker (a file whose marker is
followed by more data, e.g. a phone's motion photo, is decoded to tell the two apart), and
PIL's ``verify()`` checks every chunk checksum of a PNG. ``full=True`` decodes every image
as well (about 5 ms per COCO image, on all cores).

**Orientation, the one rule** (mmcv 2.1, what its loaders do when they read a file):
``LoadImageFromFile`` with ``color_type`` ``'color'`` or ``'grayscale'`` (the default) turns
an image by its EXIF orientation tag, with either decoding backend (cv2 and pillow agree),
so the pixels arrive as the image displays; ``'unchanged'`` and the ``*_ignore_orientation``
types keep the stored pixels. Label maps are read ``'unchanged'`` (mmseg's
``LoadAnnotations``): never turned. Annotations (COCO ``width`` / ``height``, boxes,
polygons) and label maps must therefore be in the frame the image loader produces:
:func:`loaded_size` gives it, and the size checks compare against it.
"""
import os
import os.path as osp
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

__all__ = ['Probe', 'probe_image', 'probe_images', 'map_files', 'summarise_probes',
           'loaded_size', 'applies_orientation', 'ORIENTATIONS', 'PROGRESS_ABOVE',
           'pixel_limit']

#: A progress bar is shown for sets larger than this (full COCO: 118k images).
PROGRESS_ABOVE = 2000
_JPEG_END = b'\xff\xd9'
_TAIL = 256  # bytes read at the end; encoders may pad a few bytes after the marker
_EXIF_ORIENTATION = 0x0112
#: EXIF orientation -> what the loader does to the stored pixels (5-8 swap width/height)
ORIENTATIONS = {1: 'as stored', 2: 'mirrored', 3: 'rotated 180 degrees',
                4: 'flipped upside down', 5: 'transposed', 6: 'rotated 90 degrees clockwise',
                7: 'transversed', 8: 'rotated 90 degrees counter-clockwise'}
#: color_type values for which mmcv's loaders apply the EXIF orientation
_ORIENTING = ('color', 'grayscale')

#: (path, stored (width, height) or None, reason it is unusable or None, EXIF orientation)
Probe = namedtuple('Probe', 'path size reason orientation')


def applies_orientation(color_type='color'):
    """Whether mmcv's ``LoadImageFromFile(color_type=...)`` turns images by their EXIF tag."""
    return color_type in _ORIENTING


def loaded_size(probe, color_type='color'):
    """(width, height) of the array the image loader returns for ``probe``'s file."""
    if probe.size is None:
        return None
    w, h = probe.size
    if applies_orientation(color_type) and probe.orientation in (5, 6, 7, 8):
        return h, w
    return w, h


def pixel_limit(backend):
    """Largest image (pixels) the ``backend`` decodes: OpenCV's ``CV_IO_MAX_IMAGE_PIXELS``
    (2^30 by default), Pillow's decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS)."""
    if backend == 'pillow':
        from PIL import Image
        return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS
    return int(os.environ.get('CV_IO_MAX_IMAGE_PIXELS', 1 << 30))


def _jpeg_complete(path):
    with open(path, 'rb') as f:
        f.seek(max(0, osp.getsize(path) - _TAIL))
        return _JPEG_END in f.read()


def _orientation(img):
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block: both decoders then ignore it too
        return 1
    return value if value in ORIENTATIONS else 1


def _open(path):
    """PIL's ``Image.open`` without its decompression-bomb check: whether a large image
    can be decoded is the loader's backend's limit (:func:`pixel_limit`), not PIL's."""
    from PIL import Image
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # every thread sets and restores the same values
    try:
        return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def probe_image(path, full=False, backend='cv2'):
    """:class:`Probe` of ``path``: its stored size and EXIF orientation, or the reason it is
    missing or cannot be decoded by the loader's ``backend``."""
    from PIL import ImageFile
    if not osp.isfile(path):
        return Probe(path, None, 'missing', 1)
    kind = None
    try:
        with _open(path) as img:
            size, kind, orientation = img.size, img.format, _orientation(img)
            limit = pixel_limit(backend)
            if limit and size[0] * size[1] > limit:
                return Probe(path, None, f'{size[0]}x{size[1]} pixels, more than the {backend} '
                             f'decoder reads ({limit}; raise CV_IO_MAX_IMAGE_PIXELS for cv2)',
                             orientation)
            if full or (kind == 'JPEG' and not _jpeg_complete(path)):
                if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by some library: we must see it
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
                img.load()  # a truncated file raises; trailing data after the end does not
        if kind == 'PNG' and not full:
            with _open(path) as img:  # verify() must come right after open
                img.verify()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... by format
        if kind == 'JPEG' and isinstance(err, OSError) and 'truncated' in str(err):
            return Probe(path, None, 'truncated (the JPEG data ends early)', 1)
        return Probe(path, None, f'cannot be decoded ({type(err).__name__}: {err})', 1)
    return Probe(path, size, None, orientation)


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


def probe_images(paths, full=False, progress=True, desc='checking images', backend='cv2'):
    """:func:`probe_image` of every path (threaded)."""
    return map_files(lambda p: probe_image(p, full, backend), list(paths), desc, progress)


def _examples(items, limit=3):
    return '; '.join(items[:limit]) + (f'; ... ({len(items) - limit} more)'
                                       if len(items) > limit else '')


def _size(wh):
    return f'{wh[0]}x{wh[1]}'


def orientation_note(probe):
    return f'EXIF orientation {probe.orientation}: {ORIENTATIONS[probe.orientation]}'


def summarise_probes(probes, where, expected_sizes=None, color_type='color', warnings=None):
    """Problems of a list of probes, counted by kind with examples.

    ``expected_sizes``: ``{path: (width, height)}`` the annotations claim; an image the
    loader returns at another size would be paired with boxes or masks drawn for a
    different picture. An image whose *stored* size is the claimed one but which the loader
    turns by its EXIF tag (``color_type``) is named as such: its annotations were drawn on
    the unturned pixels.
    """
    missing = [p.path for p in probes if p.reason == 'missing']
    broken = [f'{osp.basename(p.path)}: {p.reason}' for p in probes
              if p.reason not in (None, 'missing')]
    problems = []
    if missing:
        problems.append(f'{where}: {len(missing)} of {len(probes)} images do not exist, '
                        f'e.g. {_examples(missing)}')
    if broken:
        problems.append(f'{where}: {len(broken)} of {len(probes)} images are truncated or '
                        f'unreadable: {_examples(broken)}')
    if not expected_sizes:
        return problems
    turned, wrong, unsure = [], [], []
    for p in probes:
        if p.reason is not None or p.path not in expected_sizes:
            continue
        claimed, loaded = tuple(expected_sizes[p.path]), loaded_size(p, color_type)
        if loaded == claimed:
            if p.orientation != 1 and applies_orientation(color_type) and \
                    loaded == tuple(p.size):
                unsure.append(f'{osp.basename(p.path)} ({orientation_note(p)})')
        elif tuple(p.size) == claimed and p.orientation != 1:
            turned.append(f'{osp.basename(p.path)} is stored {_size(p.size)} with '
                          f'{orientation_note(p)}, so it loads as {_size(loaded)}')
        else:
            wrong.append(f'{osp.basename(p.path)} is {_size(loaded)}'
                         + (' as loaded' if p.orientation != 1 else '')
                         + f', the annotations say {_size(claimed)}')
    if turned:
        problems.append(
            f'{where}: {len(turned)} images carry an EXIF orientation tag that mmcv\'s '
            f'LoadImageFromFile (color_type {color_type!r}) applies, but their annotation '
            f'entries give the stored size, so their boxes and masks were drawn on the '
            f'unturned pixels: {_examples(turned)}. Set color_type=\'color_ignore_orientation\''
            f' in the pipeline\'s LoadImageFromFile to train on the stored pixels, or save '
            f'the images turned (without the tag) and annotate them as displayed')
    if wrong:
        problems.append(f'{where}: {len(wrong)} images differ in size from their '
                        f'annotation entry (width x height): {_examples(wrong)}')
    if unsure and warnings is not None:
        warnings.append(f'{where}: {len(unsure)} images carry an EXIF orientation tag that '
                        f'does not change their size; mmcv loads them turned as displayed, so '
                        f'their annotations must be drawn on the displayed image: '
                        f'{_examples(unsure)}')
    return problems
