"""`workbench export RUN_DIR --onnx FILE` and `workbench export RUN_DIR --script DIR`."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained run: ONNX model file(s), or a standalone PyTorch training script",
        description="Export a run folder (from `workbench train`). --onnx writes the trained model for "
                    "onnxruntime (generating topologies: two graphs, FILE's stem + .encoder/.decoder or "
                    ".init/.step.onnx, and a FILE.json manifest); --script writes train.py, preset.json, "
                    "task.json and requirements.txt into DIR: a script that trains the same network with "
                    "plain PyTorch on one CPU/GPU or under torchrun.")
    p.add_argument("run_dir", help="the run folder (holds preset.json, task.json, model.safetensors)")
    p.add_argument("--onnx", metavar="FILE", help="write the model as ONNX")
    p.add_argument("--script", metavar="DIR", help="write a standalone training script into this folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    if not args.onnx and not args.script:
        print("workbench: error: say what to export: --onnx FILE and/or --script DIR", file=sys.stderr)
        return EXIT_INVALID
    from workbench.engine.checkpoint import WeightsError
    from workbench.io.errors import DataError
    from workbench.spec import SpecError

    invalid: tuple[type[BaseException], ...] = (SpecError, DataError, WeightsError)
    try:
        from workbench.export.onnx import ExportError

        invalid += (ExportError,)
    except ImportError:  # pragma: no cover
        pass
    written = []
    try:
        if args.script:
            from workbench.export.script import ScriptExportError, export_run

            try:
                written += export_run(args.run_dir, args.script)
            except ScriptExportError as exc:
                print(f"workbench: error: cannot export {args.run_dir} as a script: {exc}", file=sys.stderr)
                return EXIT_INVALID
        if args.onnx:
            try:
                from workbench.export.onnx import export_run as export_onnx
            except ImportError as exc:  # pragma: no cover - torch.onnx is part of torch
                print(f"workbench: error: ONNX export needs torch.onnx ({exc})", file=sys.stderr)
                return EXIT_INVALID
            written += export_onnx(args.run_dir, args.onnx, opset=args.opset)
    except invalid as exc:
        print(f"workbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INVALID
    for path in written:
        print(path)
    return EXIT_OK
