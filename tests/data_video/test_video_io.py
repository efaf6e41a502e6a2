"""Decoding real and written videos and frame folders: counts and shapes as PyAV reports
them, pixels as PyAV converts them, laziness, the cache, and DataErrors naming the
file and the frame for every kind of bad input."""
from __future__ import annotations

import math
import os

import av
import numpy as np
import pytest

from tests.data_video.helpers import write_frames_folder, write_image, write_video
from workbench.io import video
from workbench.io.errors import DataError
from workbench.io.video import FrameSettings


def _pyav_facts(path):
    """(stream.frames, width, height, frames decoded) straight from PyAV."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        reported, w, h = s.frames, s.codec_context.width, s.codec_context.height
        decoded = sum(1 for _ in c.decode(s))
    return reported, w, h, decoded


@pytest.mark.parametrize("name", ["cockatoo.mp4", "realshort.mp4", "newtonscradle.gif"])
def test_real_videos_match_what_pyav_reports(shared_data, name):
    path = shared_data / "video" / name
    reported, w, h, decoded = _pyav_facts(path)
    assert reported == decoded > 0  # these containers store their frame count
    info = video.probe(path)
    assert (info.frames, info.width, info.height) == (reported, w, h)
    assert video.count_frames(path) == reported
    clip = video.read_clip(path, FrameSettings(width=32, height=18))
    assert clip.shape == (reported, 3, 18, 32) and clip.dtype == np.uint8
    grey = video.read_clip(path, FrameSettings(width=24, height=16, grey=True, stride=3))
    assert grey.shape == (math.ceil(reported / 3), 1, 16, 24)
    floats = video.load_clip(path, FrameSettings(width=32, height=18, max_frames=5))
    assert floats.shape == (5, 3, 18, 32) and floats.dtype == np.float32
    assert 0.0 <= floats.min() and floats.max() <= 1.0 and floats.std() > 0.01  # a real picture, not blank


def test_native_size_pixels_are_pyavs_rgb_conversion(shared_data):
    path = shared_data / "video" / "realshort.mp4"
    clip = video.read_clip(path)  # native size, RGB
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert clip.shape == (36, 3, 240, 320)
    np.testing.assert_array_equal(clip[0], frames[0].transpose(2, 0, 1))
    np.testing.assert_array_equal(clip[-1], frames[-1].transpose(2, 0, 1))


def test_stride_start_and_max_frames_pick_the_right_source_frames(tmp_path):
    # frame i is uniformly grey level 10*i: the decoded value says which frame it was
    frames = np.stack([np.full((1, 8, 8), 10 * i, np.uint8) for i in range(20)])
    folder = write_frames_folder(tmp_path / "frames", frames)
    clip = video.read_clip(folder, FrameSettings(grey=True, stride=3, start=2, max_frames=4))
    assert clip[:, 0, 0, 0].tolist() == [20, 50, 80, 110]


def test_frames_folder_is_in_numeric_order_not_name_order(tmp_path):
    frames = np.stack([np.full((3, 6, 10), 20 * i, np.uint8) for i in range(12)])
    folder = write_frames_folder(tmp_path / "f", frames)  # frame_1.png ... frame_12.png
    (folder / "notes.txt").write_text("not a frame")
    info = video.probe(folder)
    assert (info.frames, info.width, info.height) == (12, 10, 6)
    clip = video.read_clip(folder, FrameSettings(grey=True))
    assert clip.shape == (12, 1, 6, 10)
    assert clip[:, 0, 0, 0].tolist() == [20 * i for i in range(12)]  # frame_2 before frame_10


@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".webm", ".gif", ".mp4"])
def test_written_containers_decode_with_pyavs_count(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (9, 3, 16, 24), dtype=np.uint8)
    path = write_video(tmp_path / f"clip{suffix}", frames)
    reported, w, h, decoded = _pyav_facts(path)
    assert decoded == 9
    # MKV and WebM store no count (0): count_frames decodes to count then
    assert video.count_frames(path) == (reported or decoded) == 9
    clip = video.read_clip(path, FrameSettings(width=12, height=8, grey=True))
    assert clip.shape == (9, 1, 8, 12)


def test_iter_frames_is_lazy_and_stops_early(shared_data):
    frames = video.iter_frames(shared_data / "video" / "cockatoo.mp4", FrameSettings(width=16, height=9))
    first = next(frames)
    assert first.shape == (3, 9, 16)
    frames.close()  # closes the container without decoding the rest


def test_a_clip_too_big_for_memory_is_refused_naming_the_frame(shared_data):
    path = shared_data / "video" / "cockatoo.mp4"
    with pytest.raises(DataError) as info:
        video.read_clip(path, FrameSettings(), max_bytes=20 * 2**20)  # 1280x720 RGB: ~2.6 MiB a frame
    assert str(path) in str(info.value) and "frame 7" in str(info.value) and "MiB" in str(info.value)


def test_cache_returns_the_decoded_clip_until_the_file_changes(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (5, 3, 16, 16), dtype=np.uint8)
    path = write_video(tmp_path / "c.avi", frames)
    settings = FrameSettings(width=8, height=8)
    a = video.read_clip(path, settings)
    assert video.read_clip(path, settings) is a
    assert not a.flags.writeable  # a cached clip cannot be changed by a caller
    assert video.read_clip(path, FrameSettings(width=8, height=8, grey=True)) is not a
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert video.read_clip(path, settings) is not a


# ----------------------------------------------------------------------------- bad input


def _error(path, settings=None) -> str:
    with pytest.raises(DataError) as info:
        video.read_clip(path, settings)
    return str(info.value)


def test_truncated_mp4_names_file_and_frame(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (30, 3, 32, 32), dtype=np.uint8)
    # moov atom first (faststart), so the cut file still opens and announces 30 frames
    whole = write_video(tmp_path / "whole.mp4", frames, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    message = _error(cut)
    assert str(cut) in message and "frame " in message and ("truncated" in message or "corrupt" in message)


def test_truncated_real_mp4_without_its_index_names_the_file(shared_data, tmp_path):
    cut = tmp_path / "cockatoo_cut.mp4"
    data = (shared_data / "video" / "cockatoo.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    message = _error(cut)
    assert str(cut) in message and "truncated" in message


def test_truncated_gif_is_reported(shared_data, tmp_path):
    cut = tmp_path / "cradle.gif"
    data = (shared_data / "video" / "newtonscradle.gif").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    message = _error(cut)
    assert str(cut) in message and "truncated" in message


@pytest.mark.parametrize("content,words", [
    (b"", "empty"),
    (b"this is not a video at all " * 50, "cannot be opened as a video"),
    (bytes(range(256)) * 40, "cannot be opened as a video"),
])
def test_not_a_video_names_the_file(tmp_path, content, words):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    message = _error(path)
    assert str(path) in message and words in message
    with pytest.raises(DataError):
        video.probe(path)


def test_missing_file_and_empty_folder(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _error(empty)
    assert str(empty) in message and "no frame images" in message
    with pytest.raises(DataError, match="no frame images"):
        video.probe(empty)


def test_frames_folder_with_mixed_sizes_names_file_and_frame(tmp_path):
    folder = tmp_path / "mixed"
    write_frames_folder(folder, np.zeros((2, 3, 8, 8), np.uint8))
    write_image(folder / "frame_3.png", np.zeros((3, 10, 8), np.uint8))
    message = _error(folder, FrameSettings(width=8, height=8))
    assert str(folder / "frame_3.png") in message and "frame 2" in message and "8x10" in message


def test_corrupt_image_in_folder_names_file_and_frame(tmp_path):
    folder = write_frames_folder(tmp_path / "f", np.zeros((3, 3, 8, 8), np.uint8))
    (folder / "frame_2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    message = _error(folder)
    assert str(folder / "frame_2.png") in message and "frame 1" in message
