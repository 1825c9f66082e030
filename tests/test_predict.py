"""Decoding of detector outputs (scripts/predict.py), without any engine."""
import numpy as np
import pytest

from converters.errors import EmoDetError
from scripts.detectors import (CropPass, LetterboxDetector, Pass, candidate_detections, joined_opinion, letterbox,
                               parse_passes, passes_text, square_crop)
from scripts.scoring import write_yolo_predictions

# (classes, anchors) scores of 3 anchors and 2 classes
SCORES = np.array([[0.9, 0.2, 0.0005],
                   [0.3, 0.6, 0.002]])


def test_one_label_per_anchor_keeps_the_best_class_above_the_threshold():
    anchor, cls, score = candidate_detections(SCORES, multi_label=False, conf=0.001)
    assert anchor.tolist() == [0, 1, 2] and cls.tolist() == [0, 1, 1] and score.tolist() == [0.9, 0.6, 0.002]


def test_multi_label_keeps_every_class_above_the_threshold():
    anchor, cls, score = candidate_detections(SCORES, multi_label=True, conf=0.25)
    assert sorted(zip(anchor.tolist(), cls.tolist(), score.tolist())) == [(0, 0, 0.9), (0, 1, 0.3), (1, 1, 0.6)]


class _Fixed(LetterboxDetector):
    """Two overlapping boxes on a 64 px input; the first is sad (0.7) or neutral (0.4), the second neutral."""
    imgsz = 64

    def raw(self, x):
        return np.array([[20, 22], [20, 20], [10, 10], [10, 10],  # cx, cy, w, h
                         [0.4, 0.5], [0.0, 0.0], [0.7, 0.1]], np.float32)


def _fixed_hooked(nth: int, action):
    """A _Fixed detector class whose `nth` forward pass first runs `action` (a slow set-up, a Ctrl-C); it counts its
    passes in `calls`."""
    class Hooked(_Fixed):
        calls = 0

        def raw(self, x):
            Hooked.calls += 1
            if Hooked.calls == nth:
                action()
            return super().raw(x)
    return Hooked


def test_decode_maps_back_to_the_image_and_suppresses_per_class():
    image = np.zeros((32, 64, 3), np.uint8)  # letterboxed with 16 px bands above and below
    one = _Fixed()(image, 0.25, 0.5)
    assert one[:, :2].tolist() == [[2, pytest.approx(0.7)], [0, pytest.approx(0.5)]]
    assert one[0, 2:].tolist() == pytest.approx([15, 0, 25, 9])  # y1 = 15 - 16 clipped at the image top
    multi = _Fixed(multi_label=True)(image, 0.25, 0.5)
    # neutral: the 0.5 box suppresses the 0.4 one (IoU 0.67), sad keeps its box: two labels on one face
    assert sorted(multi[:, 0].tolist()) == [0, 2] and multi[:, 1].tolist() == pytest.approx([0.7, 0.5])


def test_scoring_refuses_a_one_label_detector(tmp_path):
    with pytest.raises(EmoDetError, match="multi_label"):
        write_yolo_predictions(_Fixed(), [], tmp_path)


def test_scoring_times_images_after_one_untimed_call(tmp_path):
    """A runtime's one-time set-up on its first run is not a per-image cost: the first image is run once untimed."""
    import time

    import cv2
    SlowFirst = _fixed_hooked(1, lambda: time.sleep(0.3))
    images = []
    for k in range(3):
        images.append(tmp_path / f"{k}.jpg")
        cv2.imwrite(str(images[-1]), np.zeros((32, 64, 3), np.uint8))
    ms = write_yolo_predictions(SlowFirst(multi_label=True), images, tmp_path / "labels")
    assert SlowFirst.calls == 4 and ms < 50  # with the set-up counted: over 100 ms per image
    assert len(list((tmp_path / "labels").glob("*.txt"))) == 3


def test_flip_averaging_puts_mirror_anchors_back_in_place():
    import numpy as np
    from scripts.detectors import flip_averaged, mirrored_anchors
    perm = mirrored_anchors(64)
    assert len(perm) == 8 * 8 + 4 * 4 + 2 * 2 and np.array_equal(perm[perm], np.arange(len(perm)))
    assert perm[0] == 7 and perm[64] == 64 + 3 and perm[-1] == 64 + 16 + 2  # first row ends swap at each stride
    out = np.random.default_rng(0).random((4 + 7, len(perm))) * 64
    mirror = out[:, perm]  # what the network would output for the mirrored input, if it were mirror-symmetric
    mirror[0] = 64 - mirror[0]
    assert np.allclose(flip_averaged(out, mirror, 64), out)


def _clip(path, n=12):
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for k in range(n):
        writer.write(np.full((96, 128, 3), 10 * k, np.uint8))
    writer.release()
    return path


def test_a_stream_url_is_read_live_and_written_as_video_and_csv(tmp_path):
    """A generated video served over HTTP on this machine stands in for an rtsp/http camera stream."""
    import functools
    import http.server
    import threading
    from scripts.predict import is_stream, predict
    _clip(tmp_path / "clip.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    try:
        assert is_stream(url) and is_stream("0") and not is_stream(tmp_path / "clip.mp4")
        r = predict(url, _Fixed(), tmp_path / "out", conf=0.25, show=False)
    finally:
        server.shutdown()
    assert r["frames"] == 12 and not r["interrupted"] and r["fps"] > 0
    rows = (tmp_path / "out" / "detections.csv").read_text().splitlines()
    assert len(rows) == 1 + 12 * 2 and (tmp_path / "out" / "clip_annotated.mp4").stat().st_size > 0


def test_ctrl_c_stops_cleanly_and_keeps_what_was_written(tmp_path):
    from scripts.predict import predict

    def interrupt():
        raise KeyboardInterrupt
    StopsAtThird = _fixed_hooked(3, interrupt)
    r = predict(_clip(tmp_path / "clip.mp4"), StopsAtThird(), tmp_path / "out", show=False)
    assert r["interrupted"] and r["frames"] == 2
    rows = (tmp_path / "out" / "detections.csv").read_text().splitlines()
    assert {row.split(",")[1] for row in rows[1:]} == {"0", "1"}
    assert (tmp_path / "out" / "clip_annotated.mp4").stat().st_size > 0


class _ReadsOnlySmall(LetterboxDetector):
    """Reads a face only when the input is 32 px (as a backbone trained on small faces might): one box over the
    whole input, class 1 at 0.9 there; at other sizes the same box, class 0 at 0.1 (found, but wrong and unsure)."""
    imgsz = 64

    def raw(self, x):
        size = x.shape[-1]
        n = (size // 8) ** 2 + (size // 16) ** 2 + (size // 32) ** 2
        out = np.zeros((4 + 2, n), np.float32)
        out[:4, 0] = [size / 2, size / 2, size, size]
        out[4:, 0] = [0.0, 0.9] if size == 32 else [0.1, 0.0]
        return out


def test_an_extra_pass_gives_its_opinion_on_the_main_pass_boxes():
    image = np.zeros((100, 100, 3), np.uint8)
    assert len(_ReadsOnlySmall()(image, 0.25, 0.5)) == 0
    det = _ReadsOnlySmall()
    det.extra_passes = (Pass(32),)
    found, scores = det.with_scores(image, 0.25, 0.5)
    # classes in the proportions of the mean of (0.1, 0) and (0, 0.9), the top score the surer pass's
    assert found[:, :2].tolist() == [[1, pytest.approx(0.9)]] and scores[0] == pytest.approx([0.1, 0.9])
    assert found[0, 2:].tolist() == pytest.approx([0, 0, 100, 100])
    assert joined_opinion(np.array([[0.6], [0.2]]), np.array([[0.2], [0.2]]), np.array([0.6])).ravel() == pytest.approx(
        [0.6, 0.3])


def test_a_shrinking_pass_maps_its_boxes_back_through_the_margin():
    # a 64 px pass with the photo filling half of it: the network's box around the photo's part of the input
    # (16..48 of 64) is the whole 100 px photo, where the main pass has its box
    class BoxesThePhoto(_ReadsOnlySmall):
        def raw(self, x):
            out = super().raw(x)
            if x.shape[-1] == 64:
                out[:4, 0] = [32, 32, 32, 32]
                out[4:, 0] = [0.0, 0.8 if x[0, 0, 0, 0] == pytest.approx(114 / 255) else 0.0]
            return out
    det = BoxesThePhoto()
    det.imgsz = 96
    det.extra_passes = parse_passes("64:0.5")
    found = det(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)
    assert found[:, :2].tolist() == [[1, pytest.approx(0.8)]]
    det.extra_passes = parse_passes("64:0.5:0.5")  # the box's long side is the photo's: still from 0.5 up
    assert det(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)[:, 0].tolist() == [1]


def test_letterbox_fill_centres_the_shrunk_photo_on_grey():
    canvas, scale, pad = letterbox(np.zeros((50, 100, 3), np.uint8), 64, 0.5)
    assert scale == (0.32, 0.32) and pad == (16, 24)
    assert (canvas[24:40, 16:48] == 0).all() and canvas.sum() == 114 * 3 * (64 * 64 - 16 * 32)


def test_extra_passes_read_from_text_and_refused_in_one_line():
    assert parse_passes("128:0.67:0.4, 256, crop64:1.5:0.3") == (Pass(128, 0.67, 0.4), Pass(256),
                                                                 CropPass(64, 1.5, 0.3))
    for text in ("128:0.67:0.4,256", "96:0.5", "256", "128:0.67:0.45,crop64:1.2:0.4"):
        assert passes_text(parse_passes(text)) == text
    assert parse_passes("crop96") == (CropPass(96),) and passes_text([CropPass(96)]).startswith("crop96:")
    assert parse_passes([(96, 0.5)]) == (Pass(96, 0.5),) and parse_passes(None) == ()
    for bad, why in (("128:x", "is not PX"), ("128:1.5", "FILL must lie"), ("128:0.5:1", "FROM in"),
                     ("100", "multiple of 32"), ("128:1:0:3", "is not PX"), ("crop64:0.5", "CONTEXT must"),
                     ("crop64:1.2:0", "TO lie"), ("crop60", "multiple of 32"), ("crops64", "cropPX")):
        with pytest.raises(EmoDetError, match=why):
            parse_passes(bad)


def test_a_shrinking_pass_gives_its_opinion_on_large_faces_only():
    # both passes see a small face (0.2 of the photo) and a large one (0.8), the main pass calling them class 0,
    # the shrinking pass class 1: the large face's box takes both opinions, the small one keeps the main pass's
    class TwoFaces(LetterboxDetector):
        imgsz = 64

        def raw(self, x):
            size = x.shape[-1]
            n = (size // 8) ** 2 + (size // 16) ** 2 + (size // 32) ** 2
            out = np.zeros((4 + 2, n), np.float32)
            fill = 1.0 if size == 64 else 0.5
            lo = size * (1 - fill) / 2
            out[:4, 0] = [lo + 0.2 * size * fill, lo + 0.2 * size * fill, 0.2 * size * fill, 0.2 * size * fill]
            out[:4, 1] = [size / 2, size / 2, 0.8 * size * fill, 0.8 * size * fill]
            out[4 if size == 64 else 5, :2] = 0.9
            return out
    det = TwoFaces()
    det.extra_passes = parse_passes("32:0.5:0.5")
    found, scores = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)
    assert len(found) == 2
    small, large = np.argsort(found[:, 4] - found[:, 2])
    assert found[small, :2].tolist() == [0, pytest.approx(0.9)] and scores[small] == pytest.approx([0.9, 0])
    assert scores[large] == pytest.approx([0.9, 0.9])  # an even mean, at the surer pass's confidence
    assert found[large, 2:].tolist() == pytest.approx([10, 10, 90, 90])  # the main pass's box
    det.extra_passes = parse_passes("32:0.5")  # from any size: the small face's opinion is joined in too
    assert np.allclose(det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)[1], 0.9)


@pytest.mark.parametrize("extra_duplicate", [False, True])
def test_one_box_per_face_takes_the_surer_pass_confidence(extra_duplicate):
    # two boxes of the main pass over one face (a near-duplicate NMS at IoU 0.7 keeps): the one that fits the
    # extra pass's box best takes its confidence, the other keeps its own, so no duplicate rises with it; also
    # when the extra pass finds the face twice too (0.9, and 0.8 on the main pass's second box): its
    # near-duplicates are merged first, else each made the main-pass box it fitted best a lead
    class Duplicates(_ReadsOnlySmall):
        def raw(self, x):
            out = super().raw(x)
            if x.shape[-1] == 64:
                out[:, 1] = out[:, 0]
                out[:4, 1] = [28, 28, 56, 56]  # IoU 0.77 with the whole input
            elif extra_duplicate:
                out[:, 1] = out[:, 0]
                out[:4, 1] = [14, 14, 28, 28]  # the main pass's second box
                out[4:, 1] = [0.0, 0.8]
            return out
    det = Duplicates()
    det.extra_passes = (Pass(32),)
    found, scores = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.05, 0.9)
    assert len(found) == 2 and found[:, 0].tolist() == [1, 1]
    assert found[:, 1].tolist() == pytest.approx([0.9, 0.1])
    assert found[0, 2:].tolist() == pytest.approx([0, 0, 100, 100])


def test_an_extra_pass_is_not_run_when_the_main_pass_has_no_face_for_it():
    class MainSeesNothing(_ReadsOnlySmall):
        sizes = []

        def raw(self, x):
            self.sizes.append(x.shape[-1])
            out = super().raw(x)
            if x.shape[-1] != 32:
                out[4:] = 0
            return out
    det = MainSeesNothing()
    det.extra_passes = (Pass(32),)
    found, scores = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.001, 0.7)
    assert found.shape == (0, 6) and scores.shape == (0, 2)
    assert det.sizes == [64]  # the main pass only


def test_a_face_the_main_pass_barely_sees_is_judged_by_the_extra_pass():
    # a face filling the photo that the main pass scores at 0.005 (under 0.01, over the scoring floor 0.001) is
    # found through the second pass, which sees it clearly; at 0.0005 it is no face for any pass
    class Barely(_ReadsOnlySmall):
        main = 0.005

        def raw(self, x):
            out = super().raw(x)
            if x.shape[-1] != 32:
                out[4:, 0] = [self.main, 0.0]
            return out
    det = Barely()
    det.extra_passes = (Pass(32),)
    found, _ = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)
    assert found[:, :2].tolist() == [[1, pytest.approx(0.9)]]
    det.main = 0.0005
    assert len(det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)[0]) == 0


def test_a_square_crop_keeps_the_face_centred_on_grey_beyond_the_edge():
    image = np.full((10, 10, 3), 7, np.uint8)
    crop, corner = square_crop(image, (0, 0, 4, 2), 2.0)  # a face in the corner: 8 px square around its centre
    assert crop.shape == (8, 8, 3) and corner == (-2, -3)
    assert (crop[3:, 2:] == 7).all() and (crop[:3] == 114).all() and (crop[:, :2] == 114).all()
    crop, corner = square_crop(image, (3, 3, 4, 4), 1.0)
    assert corner == (3, 3) and (crop == 7).all() and crop.shape == (4, 4, 3)


class _SmallAndLargeFace(LetterboxDetector):
    """The main pass (64 px, the 100 px photo filling it) finds small faces (0.2 of the photo) at `small` and a
    large one (0.8) in the middle, class 0 at 0.5 each; a 32 px input (a crop) holds one face filling 1/1.25 of
    it, read as class 1 at 0.9. Records each batch the network runs: (inputs, size)."""
    imgsz = 64

    def __init__(self, small=((0.3, 0.3),), **decode):
        super().__init__(**decode)
        self.small, self.runs = small, []

    def raw_batch(self, x):
        self.runs.append((len(x), x.shape[-1]))
        return super().raw_batch(x)

    def raw(self, x):
        size = x.shape[-1]
        out = np.zeros((4 + 2, (size // 8) ** 2 + (size // 16) ** 2 + (size // 32) ** 2), np.float32)
        if size == self.imgsz:
            for i, (cx, cy) in enumerate(self.small):
                out[:4, i] = [cx * size, cy * size, 0.2 * size, 0.2 * size]
            out[:4, len(self.small)] = [size / 2, size / 2, 0.8 * size, 0.8 * size]
            out[4, :len(self.small) + 1] = 0.5
        else:
            out[:4, 0] = [size / 2, size / 2, size / 1.25, size / 1.25]
            out[5, 0] = 0.9
        return out


def test_a_crop_pass_gives_its_opinion_on_small_faces_only():
    det = _SmallAndLargeFace()
    det.extra_passes = parse_passes("crop32:1.25:0.5")
    found, scores = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)
    small, large = np.argsort(found[:, 4] - found[:, 2])
    # the small face: the mean of (0.5, 0) and (0, 0.9) at the surer confidence, the crop's; the large one as it was
    assert scores[small] == pytest.approx([0.5, 0.9]) and found[small, :2].tolist() == [1, pytest.approx(0.9)]
    assert found[small, 2:].tolist() == pytest.approx([20, 20, 40, 40])  # the main pass's box
    assert scores[large] == pytest.approx([0.5, 0]) and found[large, :2].tolist() == [0, 0.5]
    assert det.runs == [(1, 64), (1, 32)]
    det = _SmallAndLargeFace()
    det.extra_passes = parse_passes("crop32:1.25:0.9")  # up to 0.9 of the photo: the large face is read too
    assert det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)[0][:, 0].tolist() == [1, 1]
    assert det.runs == [(1, 64), (2, 32)]  # both crops in one batch


def test_a_crop_pass_reads_at_most_max_crops_faces_and_none_without_a_small_face(monkeypatch):
    import scripts.detectors as detectors
    monkeypatch.setattr(detectors, "MAX_CROPS", 2)
    det = _SmallAndLargeFace(small=((0.15, 0.15), (0.5, 0.15), (0.85, 0.15)))
    det.extra_passes = (CropPass(32, 1.25, 0.5),)
    found = det(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)
    assert det.runs == [(1, 64), (2, 32)] and sorted(found[:, 0].tolist()) == [0, 0, 1, 1]
    det = _SmallAndLargeFace(small=())
    det.extra_passes = (CropPass(32, 1.25, 0.5),)
    assert det(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)[:, 0].tolist() == [0]
    assert det.runs == [(1, 64)]


def test_one_box_per_small_face_takes_the_crops_confidence():
    # two boxes of the main pass over one small face: the one fitting the face NMS kept (the surer) takes the crop's
    # confidence, the other keeps its own, its classes in the joined proportions
    class Duplicate(_SmallAndLargeFace):
        def raw(self, x):
            out = super().raw(x)
            if x.shape[-1] == self.imgsz:
                out[:, 2] = out[:, 0]
                out[:4, 2] = [0.3 * 64 + 1, 0.3 * 64 + 1, 0.2 * 64, 0.2 * 64]  # shifted 1 px: IoU 0.82
                out[4, 2] = 0.4
            return out
    det = Duplicate()
    det.extra_passes = (CropPass(32, 1.25, 0.5),)
    found, scores = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.05, 0.9)
    small = found[:, 4] - found[:, 2] < 50
    assert sorted(found[small, 1].tolist()) == pytest.approx([0.4, 0.9]) and found[small, 0].tolist() == [1, 1]


def test_a_crop_that_sees_no_face_changes_nothing():
    class BlindCrops(_SmallAndLargeFace):
        def raw(self, x):
            out = super().raw(x)
            if x.shape[-1] != self.imgsz:
                out[4:] = 0
            return out
    det = BlindCrops()
    det.extra_passes = (CropPass(32, 1.25, 0.5),)
    found, scores = det.with_scores(np.zeros((100, 100, 3), np.uint8), 0.25, 0.5)
    assert det.runs == [(1, 64), (1, 32)] and found[:, :2].tolist() == [[0, 0.5], [0, 0.5]]
