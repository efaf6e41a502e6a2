"""Bad preset files, each through `workbench train FILE` in its own process: exit 2, one
line on stderr naming the file and the field, no traceback, no run folder. Plus the
memory check: a preset whose estimated training memory exceeds what the device has free
is refused before anything is allocated, with the estimate and the limit in the message.

(tests/foundation/test_spec.py checks the same validation in-process, field by field;
these are the user's view: a file on disk and the command line.)"""
from __future__ import annotations

import json

import pytest
import torch

from tests.reliability.helpers import refusal, run_batch, run_workbench
from workbench import presets
from workbench.engine import resources
from workbench.spec import Preset

RUN_ARGS = ["--device", "cpu", "--quiet", "--steps", "2"]


def tiny_raw(name: str = "adding_gru") -> dict:
    raw = presets.load_builtin(name).to_dict()
    for layer in raw["model"]["layers"] + raw["model"]["decoder_layers"]:
        layer["hidden_size"] = 4
    raw["train"].update(batch_size=4, eval_every=0, probe_every=0, num_threads=1)
    if raw["data"]["task"] == "adding":
        raw["data"]["options"].update(seq_len=6, val_size=8)
    return raw


def _edit(name: str, fn) -> dict:
    raw = tiny_raw(name)
    fn(raw)
    return raw


# name -> (file content: bytes, or a dict written as JSON), needles of the one-line message
# (the file's path is always checked besides)
CASES: dict[str, tuple] = {
    "not_json": (b'{"schema_version": 1, "name": "x",, }', ["is not valid JSON", "line 1, column"]),
    "empty_file": (b"", ["is not valid JSON"]),
    "binary": (bytes(range(256)) * 4, ["not a UTF-8 text file"]),
    "json_list": (b"[1, 2, 3]", ["must be a JSON object"]),
    "schema_version_wrong": (_edit("adding_gru", lambda r: r.update(schema_version=99)),
                             ["schema_version", "version 99 is not supported", "reads version 1"]),
    "schema_version_missing": (_edit("adding_gru", lambda r: r.pop("schema_version")),
                               ["schema_version", "missing", "not a workbench preset"]),
    "unknown_key_top": (_edit("adding_gru", lambda r: r.update(surprise=1)), ["surprise", "unknown field"]),
    "unknown_key_nested": (_edit("adding_gru", lambda r: r["model"]["layers"][0].update(hidden_sise=8)),
                           ["model.layers.0.hidden_sise", "unknown field", "hidden_size"]),
    "wrong_type_text_for_int": (_edit("adding_gru", lambda r: r["model"]["layers"][0].update(hidden_size="big")),
                                ["model.layers.0.hidden_size", "expected a whole number"]),
    "wrong_type_text_for_bool": (_edit("adding_gru", lambda r: r["model"]["layers"][0].update(bidirectional="yes")),
                                 ["model.layers.0.bidirectional", "expected true or false"]),
    "wrong_type_object_for_list": (_edit("adding_gru", lambda r: r["model"].update(layers={"cell": "gru"})),
                                   ["model.layers", "expected a list"]),
    "wrong_type_null_section": (_edit("adding_gru", lambda r: r.update(train=None)),
                                ["train", "expected an object"]),
    "negative_hidden_size": (_edit("adding_gru", lambda r: r["model"]["layers"][0].update(hidden_size=-5)),
                             ["model.layers.0.hidden_size", "between 1 and", "-5"]),
    "zero_batch_size": (_edit("adding_gru", lambda r: r["train"].update(batch_size=0)),
                        ["train.batch_size", "between 1 and", "got 0"]),
    "zero_projection_size": (_edit("adding_gru", lambda r: r["model"]["input"].update(projection_size=0)),
                             ["model.input.projection_size", "got 0"]),
    "zero_steps": (_edit("adding_gru", lambda r: r["train"].update(steps=0)), ["train.steps", "got 0"]),
    "absurd_hidden_size": (_edit("adding_gru", lambda r: r["model"]["layers"][0].update(hidden_size=10**7)),
                           ["model.layers.0.hidden_size", "between 1 and 16384"]),
    "nan_learning_rate": (b'{"schema_version": 1, "train": {"lr": NaN}}', ["train.lr", "finite"]),
    "bidirectional_generator": (_edit("captions_one_to_many",
                                      lambda r: r["model"]["layers"][0].update(bidirectional=True)),
                                ["model.layers.0.bidirectional"]),
    "encoder_decoder_without_decoder": (_edit("numbers_encdec_lstm", lambda r: r["model"].update(decoder_layers=[])),
                                        ["model.decoder_layers", "at least one recurrent layer"]),
    "decoder_on_a_many_to_one": (_edit("adding_gru", lambda r: r["model"].update(decoder_layers=[{"cell": "gru"}])),
                                 ["model.decoder_layers", "only an encoder-decoder"]),
    "task_and_model_disagree": (_edit("adding_gru", lambda r: r["model"].update(topology="many_to_many")),
                                ["model.topology", "adding"]),
    "unknown_task": (_edit("adding_gru", lambda r: r["data"].update(task="poetry")), ["data.task", "poetry"]),
    "bad_task_option": (_edit("adding_gru", lambda r: r["data"]["options"].update(seq_len="long")),
                        ["data.options.seq_len"]),
    # Sizes within the per-field limits whose training memory no machine has: refused by
    # the memory check before the model is built (a 16384-unit LSTM over 100000 steps in
    # batches of 65536 keeps ~2 EiB of activations).
    "memory_beyond_the_device": (_edit("adding_lstm", lambda r: (
        r["model"]["layers"][0].update(hidden_size=16384), r["train"].update(batch_size=65536),
        r["data"]["options"].update(seq_len=100_000))),
        ["needs about", "TiB", "activations", "available", "train.batch_size", "nothing was allocated"]),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_presets")
    cases = []
    for name, (content, _needles) in CASES.items():
        path = root / f"{name}.json"
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content, indent=2).encode())
        cases.append({"name": name, "argv": ["train", str(path), "--run-dir", str(root / "runs" / name), *RUN_ARGS],
                      "env": {"WORKBENCH_HOME": str(root / "home")}})
    for name, target in (("missing_file", root / "no_such_preset.json"), ("a_folder", root / "folder.json")):
        if name == "a_folder":
            target.mkdir()
        cases.append({"name": name, "argv": ["train", str(target), "--run-dir", str(root / "runs" / name), *RUN_ARGS],
                      "env": {"WORKBENCH_HOME": str(root / "home")}})
    # Left-out fields take their defaults (see workbench/spec.py): this short file trains.
    short = {"schema_version": 1, "name": "short", "data": {"task": "adding", "options": {"seq_len": 5}},
             "model": {"input": {"kind": "linear"}, "layers": [{"cell": "gru", "hidden_size": 3}],
                       "head": {"kind": "regression"}},
             "train": {"batch_size": 2, "eval_batches": 1}}
    (root / "short.json").write_text(json.dumps(short))
    cases.append({"name": "short", "argv": ["train", str(root / "short.json"), "--run-dir", str(root / "runs" / "short"),
                                            *RUN_ARGS], "env": {"WORKBENCH_HOME": str(root / "home")}})
    found = run_batch(cases, root / "batch")
    return root, found


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_preset_file_is_refused_in_one_line(results, name):
    root, found = results
    line = refusal(found[name], *CASES[name][1])
    assert str(root / f"{name}.json") in line  # the message names the file
    assert not (root / "runs" / name).exists()  # nothing was started


def test_a_missing_preset_file_or_a_folder_is_refused(results):
    root, found = results
    refusal(found["missing_file"], str(root / "no_such_preset.json"), "does not exist")
    refusal(found["a_folder"], str(root / "folder.json"), "is a folder")


def test_left_out_fields_take_their_defaults_and_the_run_records_them_all(results):
    """A hand-written preset may give only what differs from the defaults: a left-out
    field is never a typo (a misspelt one is refused as unknown), and the run folder's
    preset.json holds every value the run used."""
    root, found = results
    assert found["short"]["rc"] == 0, found["short"]["stderr"]
    saved = json.loads((root / "runs" / "short" / "preset.json").read_text())
    defaults = Preset().to_dict()
    assert saved["train"]["lr"] == defaults["train"]["lr"] and saved["train"]["optimizer"] == "adam"
    assert saved["model"]["layers"][0] == {**defaults["model"]["layers"][0], "cell": "gru", "hidden_size": 3}
    assert set(saved["train"]) == set(defaults["train"])  # complete: nothing left implicit


def test_the_real_entry_point_refuses_in_one_line(tmp_path):
    """One case through a genuine `python -m workbench` (the batch above forks its processes)."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_edit("adding_gru", lambda r: r["model"]["layers"][0].update(hidden_size=-1))))
    proc = run_workbench("train", str(path), "--run-dir", str(tmp_path / "run"), *RUN_ARGS,
                         env={"WORKBENCH_HOME": str(tmp_path / "home")})
    refusal(proc, str(path), "model.layers.0.hidden_size")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- the memory check


def test_memory_check_refuses_before_the_model_is_built(monkeypatch, tmp_path):
    """With the free memory pinned low, an ordinary preset is refused by the trainer's
    set-up before build_model is called, naming the estimate and the limit."""
    from workbench.engine import trainer as trainer_mod
    from workbench.spec import with_overrides

    preset = with_overrides(presets.load_builtin("adding_lstm"),
                            ["data.options.seq_len=50", "data.options.val_size=8", "train.batch_size=64"])
    monkeypatch.setattr(resources, "available_memory", lambda device: (1024 * 1024, "the test allows 1.0 MiB"))

    def never(*args, **kwargs):
        raise AssertionError("build_model was called: memory was allocated before the check")

    monkeypatch.setattr(trainer_mod, "build_model", never)
    trainer = trainer_mod.Trainer(preset)
    with pytest.raises(trainer_mod.TrainingError) as info:
        next(trainer.run())
    message = str(info.value)
    estimate = resources.training_memory(preset, trainer.task.model_io(), 50, None)
    from workbench.spec import format_bytes

    assert f"needs about {format_bytes(estimate['total'])}" in message
    assert "the test allows 1.0 MiB" in message and "batch of 64 x 50 steps" in message
    assert trainer.model is None


def test_memory_check_passes_what_fits_and_the_builtin_presets(monkeypatch):
    """The check must not refuse what trains: tiny presets, and the built-in presets
    against this machine's memory (they were all trained on ordinary machines)."""
    from workbench.tasks import make_task

    free, _what = resources.available_memory(torch.device("cpu"))
    assert free is None or free > 0
    for name in ("adding_lstm", "charlm_lstm", "video_nextframe_lstm", "numbers_encdec_lstm"):
        preset = presets.load_builtin(name)
        task = make_task(preset)
        seq_len, out_len = resources.sample_lengths(task, preset.train.batch_size, preset.model.topology)
        assert seq_len > 1, name
        estimate = resources.training_memory(preset, task.model_io(), seq_len, out_len)
        assert estimate["total"] < 2 * 1024**3, (name, estimate)  # a laptop trains these
        monkeypatch.setattr(resources, "available_memory", lambda device: (4 * 1024**3, "4 GiB"))
        assert resources.check_training_memory(preset, task, torch.device("cpu")) == estimate


def test_free_memory_is_read_from_the_kernel_the_cgroup_and_the_gpu(monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n")
    assert resources._meminfo_available(meminfo) == 8_000_000 * 1024
    assert resources._meminfo_available(tmp_path / "absent") is None
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("100\n")
    assert resources._cgroup_available(cgroup) is None  # no limit
    (cgroup / "memory.max").write_text(str(3 * 1024**3) + "\n")
    (cgroup / "memory.current").write_text(str(1024**3) + "\n")
    assert resources._cgroup_available(cgroup) == 2 * 1024**3
    # a container's limit below the machine's free RAM is the limit that counts
    monkeypatch.setattr(resources, "_meminfo_available", lambda: 8 * 1024**3)
    monkeypatch.setattr(resources, "_cgroup_available", lambda: 2 * 1024**3)
    free, what = resources.available_memory(torch.device("cpu"))
    assert free == 2 * 1024**3 and "cgroup" in what
    monkeypatch.setattr(resources, "_cgroup_available", lambda: None)
    assert resources.available_memory(torch.device("cpu"))[0] == 8 * 1024**3
    monkeypatch.setattr(resources, "_meminfo_available", lambda: None)
    monkeypatch.setattr(resources, "_sysconf_available", lambda: None)
    assert resources.available_memory(torch.device("cpu")) == (None, "unknown")  # unknown: no check
    # on a GPU: what mem_get_info reports free on that device
    seen = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: seen.append(index) or (5 * 1024**3, 80 * 1024**3))
    free, what = resources.available_memory(torch.device("cuda", 1))
    assert free == 5 * 1024**3 and seen == [1] and "cuda:1" in what and "5.0 GiB" in what
