// A Node.js client generated from onnxplain's .proto files at run time (@grpc/grpc-js +
// @grpc/proto-loader): the cross-language check of the contract. It needs nothing of the repository
// but the proto folder. Prints one JSON line per call, warnings on stderr.
//
//   cp -r client/examples/node my-client && cp -r proto my-client/proto && cd my-client
//   npm install
//   node explain.js localhost:50051 efficientnet_lite0 photo.png      # or: npm start -- ADDRESS MODEL IMAGE
//
// The proto folder is ./proto beside this file unless ONNXPLAIN_PROTO names another.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [address, model, imagePath] = process.argv.slice(2);
const protoRoot = process.env.ONNXPLAIN_PROTO || path.join(__dirname, "proto");
const options = { includeDirs: [protoRoot], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };
const v1 = grpc.loadPackageDefinition(
  loader.loadSync(["onnxplain/v1/explanation_service.proto", "onnxplain/v1/model_service.proto"], options),
).onnxplain.v1;
const credentials = grpc.credentials.createInsecure();
const limits = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };
const models = new v1.ModelService(address, credentials, limits);
const explanations = new v1.ExplanationService(address, credentials, limits);
const image = { encoded: fs.readFileSync(imagePath) };

models.Predict({ model, image, top_k: 1 }, (error, prediction) => {
  if (error) throw error;
  console.log(JSON.stringify({ predict: prediction.classes[0].label }));
  // Why the answer may be wrong (e.g. the model's preprocessing was defaulted): printed, never dropped.
  for (const warning of prediction.warnings) console.error(`warning: ${warning}`);
  const call = explanations.Explain({
    request_id: "node-1", model, method: "occlusion", image,
    occlusion: { window: 56, stride: 56 }, output: { overlay_png: true },
  });
  const kinds = [];
  call.on("data", (response) => {
    kinds.push(response.event);
    if (response.event === "accepted") {
      for (const warning of response.accepted.warnings) console.error(`warning: ${warning}`);
    }
    if (response.event === "result") {
      const heatmaps = response.result.heatmaps;
      console.log(JSON.stringify({
        request_id: response.request_id, kinds, datatype: heatmaps.datatype, shape: heatmaps.shape,
        bytes: heatmaps.raw_contents.length, label: response.result.targets[0].target.label,
        overlay_png_bytes: response.result.targets[0].overlay_png.length,
        forward: response.result.forward_evaluations,
      }));
    }
  });
  call.on("error", (error) => { console.error(error.message); process.exit(1); });
  call.on("end", () => {
    explanations.Explain({ model, method: "occlusion", image, occlusion: { window: 0 } })
      .on("error", (error) => {
        console.log(JSON.stringify({ error_code: error.code, error_details: error.details }));
        process.exit(0);
      })
      .on("data", () => {});
  });
});
