"""RNN Workbench: design, train and inspect recurrent neural networks."""
__version__ = "0.1.0"
