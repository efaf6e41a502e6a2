"""`workbench try RUN_DIR --text "..."` / `--video FILE` / `--image FILE` / `--audio FILE`: try a trained
model headless and print what it answers as JSON on stdout.

The same inference as the window's "Try it" panel (workbench.inference): a language
model continues the text, a tagger tags each word, a classifier gives class
probabilities, an encoder-decoder decodes greedily, by sampling and (--beam N) by beam
search (with its attention matrix), a chatbot replies to the message (greedy, or beam
search with --beam N, or sampled with --temperature T > 0 and --sample, or chosen by the
model among its own and retrieved training replies with --rerank K), a captioner
captions a new generated image (or --image FILE), a video model gives a probability
vector per frame or its next-frame error per frame, a speech model names the word of an
audio clip or transcribes it (CTC: greedy and beam search), a forecaster
forecasts after the values typed. --saliency adds ||dy/dx_t|| over the input steps;
--states FILE.npz saves every layer's hidden states and gate activations.
"""
from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from workbench.commands.argtypes import non_negative_float, non_negative_int, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("try", help="try a trained run on your text, image, video or audio; prints JSON",
                              description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("run_dir", help="a run folder (preset.json, task.json, model.safetensors)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text", help="the text: a prompt, a sentence, a source, numbers (per the run's task)")
    what.add_argument("--video", metavar="FILE", help="a video file or a folder of frame images")
    what.add_argument("--image", metavar="FILE", help="captioning: an image file (default: a new generated image)")
    what.add_argument("--audio", metavar="FILE", help="speech: an audio file (WAV, FLAC, MP3, OGG)")
    p.add_argument("--temperature", type=non_negative_float, default=1.0,
                   help="sampling temperature (0: greedy); default 1")
    p.add_argument("--top-k", type=non_negative_int, default=0, help="sample among the k likeliest tokens (0: all)")
    p.add_argument("--beam", type=positive_int,
                   help="beam-search width: encoder-decoders and chatbots (default 1: greedy only), speech with "
                   "CTC (prefix beam search; default 8)")
    p.add_argument("--sample", action="store_true", help="chatbots: sample the reply at --temperature instead")
    p.add_argument("--mbr", type=positive_int, default=0, metavar="N",
                   help="chatbots: minimum Bayes risk decoding, the consensus (highest mean chrF to the others) of N "
                   "sampled replies (at --temperature with --sample, else 1)")
    p.add_argument("--rerank", type=non_negative_int, metavar="K",
                   help="chatbots: retrieve-then-rerank, the model's choice among its beam-search reply and the "
                   "replies of the K nearest training questions (0: off; default: the run's data.options.rerank); "
                   "\"decoding\" says which was chosen")
    p.add_argument("--previous", default="",
                   help="chatbots trained with the previous turn as context: the turn before the message")
    p.add_argument("--length", type=positive_int, default=200, help="tokens to generate (language models); default 200")
    p.add_argument("--seed", type=int, help="random seed for sampling (and the generated image)")
    p.add_argument("--max-frames", type=positive_int, default=0, help="video: frames to read at most (after the stride)")
    p.add_argument("--saliency", action="store_true",
                   help="add saliency through time: ||dy/dx_t|| of the (last) output over the input steps")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: the cores less one, at least one; "
                   "or WORKBENCH_THREADS)")
    p.add_argument("--states", metavar="FILE.npz", help="save every layer's hidden states and gates to this file")
    p.set_defaults(func=cmd_try)


def cmd_try(args) -> int:
    from workbench.engine import cpu_policy

    # training's thread policy (cores - 1, at least one; --threads or WORKBENCH_THREADS overrides)
    policy = cpu_policy.apply("cli try", threads=args.threads or cpu_policy.default_threads())
    from workbench import inference
    from workbench.errors import UsageError

    session = inference.open_run(args.run_dir)
    try:
        result, request = _run(inference, session, args)
        if args.saliency or args.states:
            inside = inference.inside(session, request, saliency=args.saliency)
            if args.saliency:
                result["saliency"] = inside["saliency"]
            if args.states:
                result["states_file"] = _save_states(args.states, inside)
    except inference.InputError as exc:
        raise UsageError(str(exc)) from None
    json.dump(jsonable({"run_dir": str(session.run_dir), "task": session.preset.data.task,
                        "mode": session.mode, **result, "cpu_policy": policy}), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _run(inference, session, args) -> tuple[dict, dict]:
    """The mode's answer and the request that looks inside for the same input: the input
    the mode reads (workbench.tryout_modes: Mode.input, Mode.flag) and the options."""
    from workbench import tryout_modes
    from workbench.errors import UsageError

    mode = tryout_modes.get(session.mode)
    task = session.preset.data.task
    others = [f"--{kind}" for kind in ("text", "image", "video", "audio")
              if kind != mode.input and getattr(args, kind)]
    if mode.input == "image":  # nothing: a new generated image
        if others or args.text is not None:
            raise UsageError("this run captions images: pass --image FILE, or nothing for a new generated image")
    elif not getattr(args, mode.input) and not (mode.input == "text" and args.text is not None):
        example = '"..."' if mode.input == "text" else "FILE"
        raise UsageError(f"this run ({task}) reads {mode.input}: pass {mode.flag} {example}")
    request = {"text": args.text, "image": args.image, "video": args.video, "audio": args.audio,
               "temperature": args.temperature,
               "top_k": args.top_k, "length": args.length, "seed": args.seed, "max_frames": args.max_frames,
               "beam": args.beam, "sample": args.sample, "previous": args.previous, "mbr": args.mbr,
               "rerank": args.rerank}
    return inference.answer(session, request)


def _save_states(path: str, inside: dict) -> str:
    """Every layer's series as "LAYER/SERIES" arrays [units, T] in an .npz file; its path."""
    from workbench.fileio import atomic_write_bytes

    arrays = {f"{layer['name']}/{name}": values for layer in inside["layers"]
              for name, values in layer["series"].items()}
    arrays["in_steps"] = np.asarray(inside["in_steps"], dtype=str)
    arrays["out_steps"] = np.asarray(inside["out_steps"], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    target = path if path.endswith(".npz") else path + ".npz"
    atomic_write_bytes(Path(target), buffer.getvalue())
    return target


def jsonable(value):
    """numpy arrays and scalars -> lists and floats (6 significant digits); NaN -> "nan"."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return float(f"{v:.6g}") if math.isfinite(v) else str(v)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
