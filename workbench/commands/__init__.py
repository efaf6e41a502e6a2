"""Headless commands beyond train/presets, one module each (registered in cli.EXTRA_COMMANDS)."""
