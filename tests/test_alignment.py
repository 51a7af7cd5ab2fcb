"""Pixels and labels stay aligned: the pre-flight sizes every image as mmcv's loaders return
it and reads every label map as mmseg's loader does (backbones/preflight/images.py, seg.py),
proven against the loaders themselves on real files: JPEGs with each EXIF orientation tag
(written by Pillow), and label maps in every PNG mode mmseg reads."""
import os.path as osp

import numpy as np
import pytest
from PIL import Image

# the one rule: mmcv turns an image by its EXIF tag for these color types, never a label map
COLOR_TYPES = ['color', 'grayscale', 'color_ignore_orientation', 'unchanged']


def tagged_jpeg(path, array, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)
    return str(path)


def _picture(h=40, w=100):
    """A non-square picture whose every turn and mirror looks different."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full((h, w), 128)], -1).astype(np.uint8)


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_preflight_sizes_images_as_the_loader_returns_them(tmp_path, backend):
    from mmcv.transforms import LoadImageFromFile

    from backbones.preflight.images import loaded_size, probe_image
    picture = _picture()
    for orientation in range(1, 9):
        path = tagged_jpeg(tmp_path / f'o{orientation}.jpg', picture, orientation)
        probe = probe_image(path, backend=backend)
        assert probe.reason is None and probe.orientation == orientation
        for color_type in COLOR_TYPES:
            img = LoadImageFromFile(color_type=color_type, imdecode_backend=backend)(
                dict(img_path=path))['img']
            assert loaded_size(probe, color_type) == (img.shape[1], img.shape[0]), \
                (orientation, color_type)


def test_a_stored_rotated_upright_tagged_image_loads_as_displayed(tmp_path):
    """The valid case the old size check refused: pixels stored turned, a tag that turns
    them back. mmcv returns the displayed picture, which the annotations describe."""
    from mmcv.transforms import LoadImageFromFile
    picture = _picture()
    stored = np.ascontiguousarray(np.rot90(picture))  # 90 degrees counter-clockwise
    path = tagged_jpeg(tmp_path / 'upright.jpg', stored, 6)  # 6: turn 90 clockwise to show
    img = LoadImageFromFile(color_type='color')(dict(img_path=path))['img'][..., ::-1]
    assert img.shape == picture.shape
    assert np.abs(img.astype(int) - picture).mean() < 3  # JPEG noise only


@pytest.mark.parametrize('mode', ['P', 'L', '1', 'I;16', 'RGB'])
@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
def test_preflight_reads_label_maps_as_mmseg_does(tmp_path, mode, backend):
    """Palette, grey, 1-bit and 16-bit label maps: the values the pre-flight checks are the
    values mmseg's LoadAnnotations gives the model (a 3-channel map is refused: mmseg gets
    channels, not labels)."""
    from mmseg.datasets.transforms import LoadAnnotations

    from backbones.preflight.seg import read_label
    labels = (np.arange(40 * 60).reshape(40, 60) // 300 % 8).astype(np.uint8)
    path = str(tmp_path / f'{mode.replace(";", "_")}.png')
    if mode == 'P':
        img = Image.fromarray(labels, 'L').convert('P')
        img.putpalette([c for i in range(256) for c in (i * 7 % 256, i * 3 % 256, i)])
        img.save(path)
    elif mode == '1':
        Image.fromarray(labels > 3).save(path)
    elif mode == 'I;16':
        Image.fromarray(labels.astype(np.uint16) * 30).save(path)
    elif mode == 'RGB':
        Image.fromarray(np.stack([labels] * 3, -1)).save(path)
    else:
        Image.fromarray(labels).save(path)
    shape, values = read_label(path, backend)
    try:
        loaded = LoadAnnotations(imdecode_backend=backend)(
            dict(seg_map_path=path, reduce_zero_label=False, seg_fields=[]))['gt_seg_map']
    except Exception:
        loaded = None
    if loaded is None or loaded.ndim != 2:
        assert values == -1, (mode, backend, values)  # refused as a colour image
        return
    assert shape == loaded.shape and values == set(np.unique(loaded).tolist()), (mode, backend)


def test_a_16_bit_label_above_255_is_refused_not_wrapped(tmp_path):
    from backbones.preflight.seg import read_label
    path = str(tmp_path / 'wide.png')
    Image.fromarray(np.full((8, 8), 258, np.uint16)).save(path)
    assert read_label(path) == ((8, 8), -2)  # mmseg's uint8 cast would make it label 2


def test_large_images_are_judged_by_the_loader_s_limit(tmp_path):
    """A 13,400 x 13,400 picture (180 M pixels) is over Pillow's bomb limit, which mmcv's
    OpenCV decoder does not have: not refused for cv2, refused for a pillow loader."""
    from backbones.preflight.images import probe_image
    path = str(tmp_path / 'big.png')
    Image.new('L', (13400, 13400)).save(path)
    assert probe_image(path, backend='cv2').size == (13400, 13400)
    assert 'more than the pillow decoder reads' in probe_image(path, backend='pillow').reason
    assert osp.getsize(path) < 2_000_000
