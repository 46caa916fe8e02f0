"""The replica engine: worker processes running ONNX Runtime sessions, pinned to their cores,
behind one FCFS queue (the only code that starts processes). Nothing here speaks HTTP."""
