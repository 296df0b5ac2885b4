"""`text4vis export MODEL --format onnx --out DIR`: a model that runs without PyTorch."""

from __future__ import annotations

import argparse

COMMAND = "export"
HELP = "export a model to ONNX (video and text graphs) for the torch-free runtime"
DESCRIPTION = """Export a model to ONNX, for text4vis.onnx_runtime (ONNX Runtime, no PyTorch).

MODEL is a model folder, a training checkpoint or an official checkpoint. DIR receives
video.onnx (uint8 clips [B, T, S, S, 3] in; logits and video embeddings out), text.onnx with
tokenizer/ (new label names, when the model can take them), classifier.npy and export.json
(frames, sizes, mean/std, labels, templates, logit scale, versions). --int8 also writes
video.int8.onnx, ONNX Runtime's dynamic int8 quantization of the video graph.

examples:
  text4vis export runs/k400/model --format onnx --out exported/
  text4vis export runs/k400/model --format onnx --out exported/ --int8

then, on a machine with onnxruntime and no torch (see text4vis.onnx_runtime for the install):
  from text4vis.onnx_runtime import OnnxPredictor
  OnnxPredictor.from_export("exported/").predict(["a.mp4"], labels=["dancing", "cooking"])
"""

FORMATS = ("onnx",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", metavar="MODEL", help="model folder or checkpoint (.pt)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="export format (onnx)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the export folder")
    parser.add_argument(
        "--int8", action="store_true", help="also write the dynamic int8 video graph"
    )
    parser.add_argument(
        "--no-text",
        action="store_true",
        help="leave out the text graph (the export then scores only the model's own classes)",
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (the exporter's)")


def run(args: argparse.Namespace) -> int:
    import json

    from text4vis.models.export import export_saved_model
    from text4vis.runs import setup_logging

    setup_logging("INFO")
    summary = export_saved_model(
        args.model, args.out, text=not args.no_text, int8=args.int8, opset=args.opset
    )
    print(json.dumps(summary.to_dict(), indent=2))
    return 0
