"""`workbench presets save|delete|folder`: the user's own presets (listing is `workbench presets`).

    workbench presets save SOURCE [--name NAME] [--set KEY=VALUE ...] [--force]
        SOURCE (a file, a built-in or a user preset) with the overrides, validated, saved
        into the user's presets folder as NAME (default: its own name)
    workbench presets save SOURCE --to FILE      the same, into any file the user picks
    workbench presets delete NAME                a user preset (built-ins are read-only)
    workbench presets folder                     where the user's presets live
"""
from __future__ import annotations

import sys

from workbench import presets, spec

EXIT_OK, EXIT_INVALID = 0, 2


def add_actions(parser) -> None:
    """Sub-actions of the `presets` parser (a bare `workbench presets` lists them all)."""
    parser.set_defaults(presets_action=None)
    actions = parser.add_subparsers(dest="presets_action")
    s = actions.add_parser("save", help="save a preset (with overrides) as a user preset, or to a file")
    s.add_argument("source", help="a preset file, or a built-in or user preset's name")
    s.add_argument("--name", help="the saved preset's name (default: its own)")
    s.add_argument("--to", metavar="FILE", help="write to this file instead of the user's presets folder")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field first")
    s.add_argument("--force", action="store_true", help="overwrite an existing user preset or file")
    s.set_defaults(func=cmd_presets_action)
    d = actions.add_parser("delete", help="delete a user preset")
    d.add_argument("name")
    d.set_defaults(func=cmd_presets_action)
    f = actions.add_parser("folder", help="print the user's presets folder")
    f.set_defaults(func=cmd_presets_action)


def list_user_lines() -> list[str]:
    """`workbench presets` lines for the user's presets: name first, marked [user]."""
    lines = []
    for path in presets.user_paths():
        try:
            p = spec.load(path)
            lines.append(f"{path.stem}\t{p.data.task}\t{p.model.topology}\t[user] {p.description}")
        except spec.SpecError as exc:
            lines.append(f"{path.stem}\t(invalid user preset: {exc})")
    return lines


def cmd_presets_action(args) -> int:
    try:
        if args.presets_action == "folder":
            print(presets.user_dir())
            return EXIT_OK
        if args.presets_action == "delete":
            print(f"deleted {presets.delete_user(args.name)}", file=sys.stderr)
            return EXIT_OK
        preset = presets.resolve(args.source)
        if args.set:
            preset = spec.with_overrides(preset, args.set)
        if args.to:
            from pathlib import Path

            target = Path(args.to)
            if target.exists() and not args.force:
                raise spec.SpecError("", f"{target} exists; pass --force to overwrite it")
            if args.name:
                preset.name = args.name
            spec.save(preset, target)
        else:
            target = presets.save_user(preset, args.name, overwrite=args.force)
    except spec.SpecError as exc:
        print(f"workbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INVALID
    print(target)
    return EXIT_OK
