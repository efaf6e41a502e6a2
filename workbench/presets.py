"""Built-in presets (read-only, shipped in the package: workbench/builtin/presets/) and preset lookup."""
from __future__ import annotations

from pathlib import Path

from workbench import builtin, spec
from workbench.spec import Preset, SpecError

BUILTIN_DIR = builtin.presets_dir()


def builtin_paths() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.json")) if BUILTIN_DIR.is_dir() else []


def builtin_names() -> list[str]:
    return [p.stem for p in builtin_paths()]


def load_builtin(name: str) -> Preset:
    return spec.load(BUILTIN_DIR / f"{name}.json")


def resolve(name_or_path: str) -> Preset:
    """A preset file path, or the name of a built-in preset, or of a user preset."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists() or "/" in name_or_path or "\\" in name_or_path:
        return spec.load(path)
    if (BUILTIN_DIR / f"{name_or_path}.json").exists():
        return load_builtin(name_or_path)
    if user_path(name_or_path).is_file():
        return spec.load(user_path(name_or_path))
    known = ", ".join(builtin_names())
    mine = ", ".join(user_names())
    raise SpecError("", f"no preset file or built-in preset named {name_or_path!r} (built-in: {known}"
                        + (f"; yours: {mine}" if mine else "") + ")")


# ----------------------------------------------------------------------------- user presets
# The user's own presets: JSON files in userdirs.user_presets_dir() (the data folder's
# presets/), found by name like the built-ins. Built-in names stay the built-ins': a user
# preset cannot take one, so a name always means one preset.


def user_dir() -> Path:
    from workbench.userdirs import user_presets_dir

    return user_presets_dir()


def check_user_name(name: str) -> str:
    """A user preset's name is its file name: letters, digits, '-', '_', '.' (no path)."""
    name = name.strip()
    if not name or name.startswith(".") or any(not (c.isalnum() or c in "-_.") for c in name) or len(name) > 100:
        raise SpecError("name", f"{name!r} cannot name a user preset: use letters, digits, '-', '_' and '.'")
    return name


def user_path(name: str) -> Path:
    return user_dir() / f"{name}.json"


def user_paths() -> list[Path]:
    folder = user_dir()
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def user_names() -> list[str]:
    return [p.stem for p in user_paths()]


def save_user(preset: Preset, name: str | None = None, overwrite: bool = False) -> Path:
    """Save into the user's presets folder under ``name`` (default: the preset's own name;
    the saved preset takes that name). Refuses a built-in's name, and an existing user
    preset unless ``overwrite``."""
    name = check_user_name(name or preset.name)
    if name in builtin_names():
        raise SpecError("name", f"{name!r} is a built-in preset, and built-ins are read-only: save under another name")
    path = user_path(name)
    if path.exists() and not overwrite:
        raise SpecError("name", f"a user preset named {name!r} exists ({path}): replace it explicitly "
                                f"(`workbench presets save --force`)")
    preset = preset.copy()
    preset.name = name
    spec.save(preset, path)
    return path


def delete_user(name: str) -> Path:
    if name in builtin_names():
        raise SpecError("name", f"{name!r} is a built-in preset, and built-ins are read-only")
    path = user_path(check_user_name(name))
    if not path.is_file():
        raise SpecError("name", f"there is no user preset named {name!r} in {user_dir()}")
    path.unlink()
    return path
