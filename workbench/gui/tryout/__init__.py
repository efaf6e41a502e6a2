"""The "Try it" panel: a trained run as a playground (text, images, video) and a look
inside the network (hidden states, gates, saliency through time)."""
from workbench.gui.tryout.panel import TryoutPanel

__all__ = ["TryoutPanel"]
