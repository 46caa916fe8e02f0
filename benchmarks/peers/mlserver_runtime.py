"""MLServer: a runtime calling ONNX Runtime (MLServer ships none for ONNX).

`peers.py` writes a model folder with `model-settings.json` naming this class and the model
file, then runs `mlserver start FOLDER` with `settings.json` binding 127.0.0.1.
"""

import numpy as np
from _v2 import session
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {} if self.settings.parameters else {}
        self.sess = session(str(self.settings.parameters.uri), int(extra.get("threads", 1)))
        self.out_names = [o.name for o in self.sess.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {t.name: NumpyCodec.decode_input(t).astype(np.float32) for t in payload.inputs}
        outs = self.sess.run(None, feeds)
        return InferenceResponse(model_name=self.name, outputs=[
            NumpyCodec.encode_output(n, o) for n, o in zip(self.out_names, outs)])
