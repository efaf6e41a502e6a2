"""The Qt layer: adapts the engine, holds no training logic. Never imports torch directly."""
