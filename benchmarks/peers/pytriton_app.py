"""Triton through PyTriton: the Triton server the wheel bundles, a Python model calling ONNX
Runtime, KServe V2 on 127.0.0.1.

    python pytriton_app.py MODEL.onnx PORT [THREADS]
"""

import sys

import numpy as np
from _v2 import session
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

SESSION = session(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
IN = SESSION.get_inputs()[0]
OUT = SESSION.get_outputs()[0]


@batch
def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
    x = inputs[IN.name].astype(np.float32)
    return {OUT.name: SESSION.run([OUT.name], {IN.name: x})[0]}


if __name__ == "__main__":
    config = TritonConfig(http_address="127.0.0.1", http_port=int(sys.argv[2]),
                          grpc_address="127.0.0.1", grpc_port=int(sys.argv[2]) + 1,
                          metrics_port=int(sys.argv[2]) + 2, allow_grpc=False)
    shape = tuple(int(d) for d in IN.shape[1:])
    with Triton(config=config) as triton:
        triton.bind(model_name="model", infer_func=infer,
                    inputs=[Tensor(name=IN.name, dtype=np.float32, shape=shape)],
                    outputs=[Tensor(name=OUT.name, dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(max_batch_size=8))
        triton.serve()
