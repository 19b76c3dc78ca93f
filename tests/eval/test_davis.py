"""J and F against hand-computed cases, palette PNG round trip, DAVIS layout reading."""

import numpy as np
import pytest

from avlearn.data.davis import DAVIS_PALETTE, DavisLayoutError, load_sequence, read_mask, write_mask
from avlearn.eval.davis import boundary_f, evaluate_sequence, region_iou, scored_frames, seg2bmap, summarize


def square(size=100, y=20, x=20, side=40):
    m = np.zeros((size, size), bool)
    m[y : y + side, x : x + side] = True
    return m


def test_region_iou_cases():
    a = square()
    assert region_iou(a, a) == 1.0
    assert region_iou(a, square(y=70, x=70, side=20)) == 0.0
    # shifted by 10 px right: intersection 40*30, union 2*1600 - 1200
    assert region_iou(a, square(x=30)) == pytest.approx(1200 / 2000)
    assert region_iou(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0


def test_boundary_f_cases():
    a = square()
    assert boundary_f(a, a) == 1.0
    assert boundary_f(a, square(y=70, x=70, side=20)) == 0.0
    # tolerance = ceil(0.008 * diag(100x100)) = 2 px: a 1-px shift still matches, a 10-px one does not fully
    assert boundary_f(a, square(x=21)) == 1.0
    assert 0.2 < boundary_f(a, square(x=30)) < 0.9
    assert boundary_f(a, np.zeros_like(a)) == 0.0
    assert boundary_f(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_seg2bmap_is_one_pixel_contour():
    b = seg2bmap(square(side=10))
    assert b.sum() == 4 * 10  # the offset contour: 10 + 10 + 9 + 9 + 2 corners
    assert not b[25, 25]


def test_evaluate_sequence_scores_middle_frames_and_handles_objects():
    gt = [np.zeros((50, 50), np.uint8) for _ in range(4)]
    for m in gt:
        m[5:20, 5:20] = 1
        m[30:45, 30:45] = 2
    pred = [g.copy() for g in gt]
    pred[0][:] = 0  # frame 0 is not scored (its mask is given)
    pred[3][:] = 0  # nor is the last frame (the toolkit drops it)
    pred[2][30:45, 30:45] = 0  # object 2 lost in frame 2: J 0 there, 1 in frame 1
    s = evaluate_sequence(gt, pred, name="x")
    assert s.object_ids == [1, 2]
    assert s.j_per_object == [1.0, 0.5]
    summary = summarize([s])
    assert summary["J"] == pytest.approx(0.75)
    assert summary["sequences"]["x"]["J&F"] == pytest.approx(s.jf)


def test_scored_frames_are_the_official_toolkits():
    """davis2017-evaluation (davis2017/evaluation.py, semi-supervised) scores all_gt_masks[:, 1:-1]:
    every frame but the first and the last. Found here by spoiling one frame at a time."""
    n = 7
    gt = [np.zeros((30, 30), np.uint8) for _ in range(n)]
    for m in gt:
        m[5:15, 5:15] = 1
    official = set(range(n)[1:-1])
    assert set(scored_frames(n)) == official
    influencing = set()
    for t in range(n):
        pred = [g.copy() for g in gt]
        pred[t][:] = 0
        if evaluate_sequence(gt, pred).j < 1.0:
            influencing.add(t)
    assert influencing == official == {1, 2, 3, 4, 5}
    with pytest.raises(DavisLayoutError, match="at least 3 frames"):
        evaluate_sequence(gt[:2], gt[:2])


def test_objects_are_one_to_the_first_frames_max_id_and_void_is_background(tmp_path):
    from PIL import Image

    gt = [np.zeros((20, 20), np.uint8) for _ in range(3)]
    for m in gt:
        m[2:6, 2:6] = 2  # id 1 absent from the first frame: still an object (the toolkit counts 1..max)
    assert evaluate_sequence(gt, [g.copy() for g in gt]).object_ids == [1, 2]
    m = np.zeros((20, 20), np.uint8)
    m[2:6, 2:6] = 1
    m[10:12, :] = 255  # void
    im = Image.fromarray(m, mode="P")
    im.putpalette(DAVIS_PALETTE)
    im.save(tmp_path / "v.png")
    read = read_mask(tmp_path / "v.png")
    assert read.max() == 1 and (read[10:12] == 0).all()


def test_copy_baseline_on_static_video_is_perfect():
    from avlearn.track import copy_first_mask

    m = np.zeros((40, 60), np.uint8)
    m[10:30, 10:20] = 1
    gt = [m] * 5
    pred = list(copy_first_mask([np.zeros((40, 60, 3), np.uint8)] * 5, m))
    s = evaluate_sequence(gt, pred)
    assert s.j == 1.0 and s.f == 1.0


def test_palette_png_round_trip(tmp_path):
    from PIL import Image

    m = np.zeros((20, 30), np.uint8)
    m[2:8, 3:9] = 1
    m[10:18, 15:25] = 3
    p = write_mask(tmp_path / "a" / "00000.png", m)
    with Image.open(p) as im:
        assert im.mode == "P"
        assert im.getpalette()[3:6] == [128, 0, 0]  # DAVIS colour of object 1
    assert np.array_equal(read_mask(p), m)
    Image.fromarray((m > 0).astype(np.uint8) * 255, mode="L").save(tmp_path / "bin.png")  # DAVIS-2016 style
    assert np.array_equal(read_mask(tmp_path / "bin.png"), (m > 0).astype(np.uint8))


def test_layout_errors(tmp_path):
    with pytest.raises(DavisLayoutError):
        load_sequence(tmp_path, "nope")


@pytest.mark.realdata
def test_real_davis_masks_read(shared_data):
    frames, masks = load_sequence(shared_data / "davis", "blackswan")
    assert frames.shape == (50, 480, 854, 3)
    assert set(np.unique(masks[0]).tolist()) == {0, 1}
