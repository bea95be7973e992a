"""Runs in the kserve virtualenv (tests/test_remote.py): KServe's own ``ModelServer`` serving an ONNX model.

Usage: kserve_onnx_server.py MODEL.onnx NAME GRPC_PORT HTTP_PORT [CALLS] — serves MODEL.onnx through
onnxruntime as the OIP v2 model NAME, on 127.0.0.1 only (KServe binds every interface; both listeners are
narrowed to loopback here). Each ModelInfer appends its batch size, one line, to the file CALLS when given,
so the test can see how many rows reached this server and when requests stop arriving.
"""

import sys
from types import SimpleNamespace

import kserve
import numpy as np
import onnxruntime as ort
import uvicorn
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.rest import server as rest_server

model_path, name, grpc_port, http_port = sys.argv[1:5]
calls_path = sys.argv[5] if len(sys.argv) > 5 else None
LOOPBACK = "127.0.0.1"
DATATYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64", "tensor(uint8)": "UINT8"}


def loopback_grpc_server(*args, **kwargs):
    """grpc.aio.server whose listener binds loopback instead of KServe's ``[::]``."""
    server = real_aio_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(f"{LOOPBACK}:{address.rsplit(':', 1)[1]}")
    return server


def loopback_config(*args, **kwargs):
    return uvicorn.Config(*args, **{**kwargs, "host": LOOPBACK})


real_aio_server = grpc_server.aio.server
grpc_server.aio = SimpleNamespace(**{**vars(grpc_server.aio), "server": loopback_grpc_server})
rest_server.uvicorn = SimpleNamespace(**{**vars(uvicorn), "Config": loopback_config})


def tensor_metadata(value) -> dict:
    return {"name": value.name, "datatype": DATATYPES[value.type],
            "shape": [d if isinstance(d, int) else -1 for d in value.shape]}


class OnnxModel(kserve.Model):
    """One ONNX graph in onnxruntime: the first input in, the first output out."""

    def __init__(self, model_name: str, path: str):
        super().__init__(model_name)
        self.path = path
        self.session = None

    def load(self) -> bool:
        self.session = ort.InferenceSession(path_or_bytes=self.path, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    def get_input_types(self):
        return [tensor_metadata(self.session.get_inputs()[0])]

    def get_output_types(self):
        return [tensor_metadata(self.session.get_outputs()[0])]

    def predict(self, payload: kserve.InferRequest, headers=None, response_headers=None) -> kserve.InferResponse:
        source = self.session.get_inputs()[0]
        batch = payload.get_input_by_name(source.name).as_numpy()
        if calls_path:
            with open(calls_path, "a", encoding="utf-8") as calls:
                calls.write(f"{len(batch)}\n")
        output = self.session.get_outputs()[0]
        scores = np.asarray(self.session.run([output.name], {source.name: batch})[0])
        result = kserve.InferOutput(name=output.name, shape=list(scores.shape), datatype=DATATYPES[output.type])
        result.set_data_from_numpy(scores, binary_data=True)
        return kserve.InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=[result])


if __name__ == "__main__":
    model = OnnxModel(name, model_path)
    model.load()
    kserve.ModelServer(grpc_port=int(grpc_port), http_port=int(http_port), workers=1).start([model])
