"""What leaves the workbench: ONNX model files (onnx.py) and standalone training scripts
(script.py). Weights are safetensors, written and read by workbench.engine.checkpoint;
runfolder.load_run() rebuilds a trained model from its run folder without running code
from it. No Qt here."""
