"""Bad data files, each through `workbench train PRESET --set data.path=FILE` in its own
process: exit 2, one line on stderr naming the file (and the line, frame or column), no
traceback, and no run folder: a data error surfaces before anything is written.

(The task engineers' reader tests check each reader in-process; these are end to end.)"""
from __future__ import annotations

import numpy as np
import pytest

from tests.data_video.helpers import write_frames_folder, write_image, write_video
from tests.reliability.helpers import refusal, run_batch, run_workbench

SMALL = {
    "charlm_gru": ["model.layers.0.hidden_size=4", "model.layers.1.hidden_size=4", "data.options.seq_len=8"],
    "numbers_encdec_lstm": ["model.layers.0.hidden_size=4", "model.decoder_layers.0.hidden_size=4"],
    "textclass_rnn": ["model.layers.0.hidden_size=4"],
    "forecast_airline_gru": ["model.layers.0.hidden_size=4"],
    "tagger_bilstm": ["model.layers.0.hidden_size=4"],
    "video_nextframe_lstm": ["model.layers.0.hidden_size=4"],
    "video_motion_gru": ["model.layers.0.hidden_size=4"],
}
SERIES_HEAD = "Month,Passengers\n" + "".join(f"19{49 + i // 12}-{i % 12 + 1:02d},{100 + i}\n" for i in range(6))


def _frames(n: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 255, (n, 3, size, size), dtype=np.uint8)


def _cut(path, fraction: float, to=None):
    data = path.read_bytes()
    out = to or path
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def _make(root):
    """name -> (preset, the path given as data.path, the path the message must name, needles)."""
    cases = {}

    def text(name, content: bytes, suffix=".txt"):
        path = root / f"{name}{suffix}"
        path.write_bytes(content)
        return path

    p = text("text_empty", b"")
    cases["text_empty"] = ("charlm_gru", p, p, ["the text file is empty"])
    p = text("text_blank", b"  \n\n\t\n")
    cases["text_blank"] = ("charlm_gru", p, p, ["empty"])
    p = text("text_binary", b"PK\x03\x04" + bytes(range(256)) * 16)
    cases["text_binary"] = ("charlm_gru", p, p, ["line 1", "is a binary file", "UTF-8"])
    p = text("text_not_utf8", "first line\ncaf\u00e9 cr\u00e8me\n".encode("latin-1") * 5)
    cases["text_not_utf8"] = ("charlm_gru", p, p, ["line 2", "is not UTF-8", "byte 0xe9"])
    p = text("text_utf16", "hello world\n".encode("utf-16"))
    cases["text_utf16"] = ("charlm_gru", p, p, ["UTF-8"])
    p = root / "no_such_file.txt"
    cases["text_missing"] = ("charlm_gru", p, p, ["does not exist"])
    p = root / "a_folder"
    p.mkdir()
    cases["text_is_a_folder"] = ("charlm_gru", p, p, ["is a folder"])

    p = text("pairs_one_column", b"go.\tva !\nhello there\nbye.\tsalut.\n", ".tsv")
    cases["pairs_one_column"] = ("numbers_encdec_lstm", p, p, ["line 2", "two tab-separated columns"])
    p = text("pairs_empty_target", b"go.\tva !\nhello.\t \n", ".tsv")
    cases["pairs_empty_target"] = ("numbers_encdec_lstm", p, p, ["line 2", "target", "empty"])

    p = text("labels_wrong_columns", b"text,category\ngood film,pos\nbad film,neg\n", ".csv")
    cases["labels_wrong_columns"] = ("textclass_rnn", p, p, ["line 1", "no column 'label'", "text_column"])
    p = text("labels_short_row", b"text,label\ngood film,pos\nbad film\nfine,pos\n", ".csv")
    cases["labels_short_row"] = ("textclass_rnn", p, p, ["line 3", "fields"])

    p = text("series_text_in_numbers", (SERIES_HEAD + "1949-07,abc\n1949-08,130\n").encode(), ".csv")
    cases["series_text_in_numbers"] = ("forecast_airline_gru", p, p, ["line 8", "'abc' is not a number", "Passengers"])
    p = text("series_empty_cell", (SERIES_HEAD + "1949-07,\n1949-08,130\n").encode(), ".csv")
    cases["series_empty_cell"] = ("forecast_airline_gru", p, p, ["line 8", "missing"])
    p = text("series_blank_line", (SERIES_HEAD + "\n1949-07,130\n").encode(), ".csv")
    cases["series_blank_line"] = ("forecast_airline_gru", p, p, ["line 8", "empty", "gap"])
    p = text("series_time_gap", (SERIES_HEAD + "1949-09,130\n1949-10,131\n").encode(), ".csv")
    cases["series_time_gap"] = ("forecast_airline_gru", p, p, ["line 8", "gap", "1949-06", "1949-09", "data.options.gaps"])
    p = text("series_wrong_columns", (SERIES_HEAD + "1949-07\n1949-08,130\n").encode(), ".csv")
    cases["series_wrong_columns"] = ("forecast_airline_gru", p, p, ["line 8", "has 1 field", "'Passengers' is missing"])
    p = text("series_binary", b"\x00\x01\x02" * 100, ".csv")
    cases["series_binary"] = ("forecast_airline_gru", p, p, ["binary"])

    good = "1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n"
    p = text("conllu_short_line", ("# sent_id = 1\n" + good + "1\tA dog barked\n").encode(), ".conllu")
    cases["conllu_short_line"] = ("tagger_bilstm", p, p, ["line 5", "10 tab-separated columns", "found 2"])
    p = text("conllu_bad_id", (good + "x\tA\ta\tDET\t_\t_\t2\tdet\t_\t_\n").encode(), ".conllu")
    cases["conllu_bad_id"] = ("tagger_bilstm", p, p, ["line 4", "column 1 (ID)", "'x'"])
    p = text("conllu_no_tag", (good + "1\tA\ta\t_\t_\t_\t2\tdet\t_\t_\n").encode(), ".conllu")
    cases["conllu_no_tag"] = ("tagger_bilstm", p, p, ["line 4", "UPOS"])

    whole = write_video(root / "whole.mp4", _frames(30), options={"movflags": "faststart"})
    p = _cut(whole, 0.5, root / "video_truncated.mp4")
    cases["video_truncated"] = ("video_nextframe_lstm", p, p, ["frame ", "truncated"])
    p = text("video_not_a_video", b"this is not a video " * 100, ".mp4")
    cases["video_not_a_video"] = ("video_nextframe_lstm", p, p, ["cannot be opened as a video"])
    p = text("video_empty", b"", ".mp4")
    cases["video_empty"] = ("video_nextframe_lstm", p, p, ["empty"])
    folder = write_frames_folder(root / "frames_mixed_sizes", _frames(3, 8))
    write_image(folder / "frame_4.png", np.zeros((3, 10, 8), np.uint8))
    cases["frames_mixed_sizes"] = ("video_nextframe_lstm", folder, folder / "frame_4.png", ["8x10", "8x8", "one size"])
    folder = write_frames_folder(root / "frames_corrupt_image", _frames(3, 8))
    (folder / "frame_2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cases["frames_corrupt_image"] = ("video_nextframe_lstm", folder, folder / "frame_2.png", ["frame "])
    clips = root / "clips_one_truncated"
    write_video(clips / "left" / "a.mp4", _frames(12), options={"movflags": "faststart"})
    write_video(clips / "right" / "b.mp4", _frames(12), options={"movflags": "faststart"})
    bad = _cut(write_video(clips / "right" / "c.mp4", _frames(30), options={"movflags": "faststart"}), 0.4)
    cases["clips_one_truncated"] = ("video_motion_gru", clips, bad, ["truncated"])
    return cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_data")
    (root / "files").mkdir()
    cases = _make(root / "files")
    batch = []
    for name, (preset, path, _named, _needles) in cases.items():
        sets = [f"data.path={path}"] + SMALL[preset]
        argv = ["train", preset, "--device", "cpu", "--quiet", "--steps", "2", "--run-dir", str(root / "runs" / name)]
        for item in sets:
            argv += ["--set", item]
        batch.append({"name": name, "argv": argv, "env": {"WORKBENCH_HOME": str(root / "home")}})
    return root, cases, run_batch(batch, root / "batch")


CASE_NAMES = ["text_empty", "text_blank", "text_binary", "text_not_utf8", "text_utf16", "text_missing",
              "text_is_a_folder", "pairs_one_column", "pairs_empty_target", "labels_wrong_columns",
              "labels_short_row", "series_text_in_numbers", "series_empty_cell", "series_blank_line",
              "series_time_gap", "series_wrong_columns", "series_binary", "conllu_short_line", "conllu_bad_id",
              "conllu_no_tag", "video_truncated", "video_not_a_video", "video_empty", "frames_mixed_sizes",
              "frames_corrupt_image", "clips_one_truncated"]


def test_every_case_is_listed(results):
    _root, cases, _found = results
    assert sorted(cases) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_a_bad_data_file_is_refused_in_one_line_before_any_run_folder(results, name):
    root, cases, found = results
    _preset, _path, named, needles = cases[name]
    refusal(found[name], str(named), *needles)
    assert not (root / "runs" / name).exists()  # refused before the run folder was made
    assert not (root / "home" / "history.sqlite3").exists()  # nor a row in the run history


def test_the_real_entry_point_refuses_a_binary_data_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(200))
    proc = run_workbench("train", "charlm_gru", "--set", f"data.path={path}", "--run-dir", str(tmp_path / "run"),
                         "--quiet", "--device", "cpu", env={"WORKBENCH_HOME": str(tmp_path / "home")})
    refusal(proc, str(path), "line 1", "binary")
    assert not (tmp_path / "run").exists()
