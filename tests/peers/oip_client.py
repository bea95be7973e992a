"""Runs in the tritonclient virtualenv (tests/test_oip.py): Triton's own gRPC client against onnxplain.

Usage: oip_client.py ADDRESS MODEL INPUT.npy OUT.json — calls every OIP RPC onnxplain implements,
infers INPUT.npy with raw contents and with a requested output, and writes what came back as JSON
(scores as lists) for the test to compare with onnxplain's own numbers. Errors are recorded, not raised.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

address, model, input_path, out_path = sys.argv[1:5]
client = triton.InferenceServerClient(url=address)
batch = np.load(input_path)
metadata = client.get_model_metadata(model, as_json=True)
report = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "unknown_model_ready": client.is_model_ready("no-such-model"),
    "server": client.get_server_metadata(as_json=True),
    "metadata": metadata,
}
source = metadata["inputs"][0]
infer_input = triton.InferInput(source["name"], list(batch.shape), source["datatype"])
infer_input.set_data_from_numpy(batch)
output_name = metadata["outputs"][0]["name"]
result = client.infer(model, [infer_input], outputs=[triton.InferRequestedOutput(output_name)], request_id="r-1")
report["scores"] = result.as_numpy(output_name).tolist()
report["response"] = result.get_response(as_json=True)
try:
    client.infer(model, [triton.InferInput(source["name"], [1, 2], source["datatype"])])
except InferenceServerException as error:
    report["bad_shape"] = {"status": error.status(), "message": error.message()}
with open(out_path, "w") as out:
    json.dump(report, out)
