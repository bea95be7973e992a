"""Runs in the KServe virtualenv (tests/test_oip.py): KServe's own ``InferenceGRPCClient`` against onnxplain.

Usage: kserve_client.py ADDRESS MODEL INPUT_NAME INPUT.npy OUT.json — liveness, readiness and one
inference (KServe's asyncio client sends typed contents, tritonclient raw ones), written as JSON.
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest


async def main(address: str, model: str, input_name: str, input_path: str, out_path: str) -> None:
    batch = np.load(input_path)
    client = InferenceGRPCClient(url=address, timeout=60)
    try:
        source = InferInput(input_name, list(batch.shape), "FP32")
        source.set_data_from_numpy(batch, binary_data=False)
        response = await client.infer(InferRequest(model_name=model, infer_inputs=[source], request_id="k-1"))
        report = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(model),
            "id": response.id,
            "scores": response.outputs[0].as_numpy().tolist(),
        }
    finally:
        await client.close()
    with open(out_path, "w") as out:
        json.dump(report, out)


asyncio.run(main(*sys.argv[1:6]))
