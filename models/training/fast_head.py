"""Rewrite an exported graph's full-resolution head into its quarter-resolution form, with the softmax switchable.

    python -m openeo_cloudmask.models.training.fast_head models/cloudmask-s2-4band.onnx

The network's head (``network.PixelHead``) gives each pixel its logits from its 4x4 block's context features
(a stride-4 transposed convolution) plus a 1x1 map of its own bands, then a ReLU and another 1x1 map. torch
exports that at full resolution: the transposed convolution, two MatMuls over all pixels, their Adds and the
softmax all run on H x W. This module writes the same arithmetic at quarter resolution, one channel group per
position in the 4x4 block ("space to depth"):

* context: a 1x1 convolution with 16 x hidden outputs (the transposed convolution's 16 kernel taps);
* the pixel's own bands: a 4x4 stride-4 convolution whose taps are zero except at its own position;
* ReLU, then the output map as a block-diagonal 1x1 convolution (16 x classes outputs);
* clamp, arg-max over the classes of each position, and one ``DepthToSpace`` of the uint8 class map.

onnxruntime runs every node of a graph whatever outputs a caller asks for, so the softmax (and its full-resolution
``DepthToSpace``) sits inside an ``If`` on a boolean input, ``PROBABILITIES_SWITCH``, that defaults to true (an
initializer of that name): a caller that feeds nothing gets both outputs as before; the engine feeds false when it
wants class indices only. The added taps are exact zeros, so the sums are the same up to summation order:
:func:`rewrite` checks the two graphs agree (every class index, probabilities within ``TOLERANCE``) before it writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training.card import CLASSES_NAME, INPUT_NAME, OUTPUT_NAME, PROBABILITIES_SWITCH

#: Largest probability difference the rewrite may make (float32 summation order), checked on every rewrite.
TOLERANCE = 1e-5


def _ancestors(nodes: list, outputs: set) -> list:
    """The nodes (in graph order) that ``outputs`` depend on."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(node.input)
    return keep[::-1]


def _head_weights(graph) -> dict:
    """The exported head's maps, found by structure: the one ConvTranspose, the head's MatMuls and output bias."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    deconv = [n for n in graph.node if n.op_type == "ConvTranspose"]
    if len(deconv) != 1:
        raise ValueError(f"expected one ConvTranspose (the head's context map), found {len(deconv)}: already rewritten?")
    deconv = deconv[0]
    weight, bias = init[deconv.input[1]], init[deconv.input[2]]  # (C, hidden, k, k), (hidden,)
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.name.startswith("/head/")]
    pixel = init[matmuls[0].input[0]]  # (hidden, 4): the pixel's own bands
    if len(matmuls) == 2:  # hidden features -> ReLU -> logits
        out = init[matmuls[1].input[0]]
        (add,) = [n for n in graph.node if n.op_type == "Add" and matmuls[1].output[0] in n.input]
        out_bias = init[[i for i in add.input if i in init][0]].reshape(-1)
    else:  # the context and pixel maps are the logits
        out, out_bias = None, None
    (argmax,) = [n for n in graph.node if n.op_type == "ArgMax"]
    (clip,) = [n for n in graph.node if n.op_type == "Clip" and argmax.input[0] in n.output]  # the logits' clamp
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    bounds = [float(numpy_helper.to_array(consts[name].attribute[0].t)) for name in clip.input[1:]]
    return {"features": deconv.input[0], "weight": weight, "bias": bias, "pixel": pixel, "out": out,
            "out_bias": out_bias, "bounds": bounds}


def quarter_resolution_graph(model):
    """A new ModelProto computing ``model``'s outputs with the head at quarter resolution (see the module doc)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    w = _head_weights(graph)
    channels, hidden, k, _ = w["weight"].shape
    blocks = k * k
    n_classes = w["out"].shape[0] if w["out"] is not None else hidden
    bands = w["pixel"].shape[1]
    context = np.zeros((blocks * hidden, channels, 1, 1), np.float32)
    pixel = np.zeros((blocks * hidden, bands, k, k), np.float32)
    out = np.zeros((blocks * n_classes, blocks * hidden, 1, 1), np.float32)
    for a in range(k):
        for b in range(k):
            p = a * k + b  # DepthToSpace "DCR": channel p * C + c holds pixel (a, b) of each block
            context[p * hidden : (p + 1) * hidden, :, 0, 0] = w["weight"][:, :, a, b].T
            pixel[p * hidden : (p + 1) * hidden, :, a, b] = w["pixel"]
            if w["out"] is not None:
                out[p * n_classes : (p + 1) * n_classes, p * hidden : (p + 1) * hidden, 0, 0] = w["out"]
    tensors = {
        "qh_context_w": context, "qh_context_b": np.tile(w["bias"], blocks).astype(np.float32), "qh_pixel_w": pixel,
        "qh_out_w": out, "qh_out_b": np.tile(w["out_bias"], blocks).astype(np.float32) if w["out"] is not None else None,
        "qh_lo": np.array(w["bounds"][0], np.float32), "qh_hi": np.array(w["bounds"][1], np.float32),
        "qh_by_class": np.array([0, blocks, n_classes, -1], np.int64), "qh_blocks": np.array([blocks], np.int64),
        "qh_blocks_classes": np.array([blocks * n_classes], np.int64), "qh_class_axis": np.array([2], np.int64),
        PROBABILITIES_SWITCH: np.array(True),
    }
    node = helper.make_node
    head = [
        node("Conv", [w["features"], "qh_context_w", "qh_context_b"], ["qh_context"], kernel_shape=[1, 1]),
        node("Conv", [INPUT_NAME, "qh_pixel_w"], ["qh_pixel"], kernel_shape=[k, k], strides=[k, k]),
    ]
    if w["out"] is not None:
        head += [node("Add", ["qh_context", "qh_pixel"], ["qh_sum"]), node("Relu", ["qh_sum"], ["qh_hidden"]),
                 node("Conv", ["qh_hidden", "qh_out_w", "qh_out_b"], ["qh_logits"], kernel_shape=[1, 1])]
    else:
        head += [node("Add", ["qh_context", "qh_pixel"], ["qh_logits"])]
    head += [
        node("Clip", ["qh_logits", "qh_lo", "qh_hi"], ["qh_clamped"]),
        node("Reshape", ["qh_clamped", "qh_by_class"], ["qh_grouped"]),  # (N, blocks, classes, h * w)
        node("Shape", ["qh_clamped"], ["qh_n"], start=0, end=1),
        node("Shape", ["qh_clamped"], ["qh_hw"], start=2, end=4),
        node("Concat", ["qh_n", "qh_blocks", "qh_hw"], ["qh_index_shape"], axis=0),
        node("ArgMax", ["qh_grouped"], ["qh_index"], axis=2, keepdims=0, select_last_index=0),
        node("Cast", ["qh_index"], ["qh_index_u8"], to=TensorProto.UINT8),
        node("Reshape", ["qh_index_u8", "qh_index_shape"], ["qh_index_blocks"]),
        node("DepthToSpace", ["qh_index_blocks"], [CLASSES_NAME], blocksize=k, mode="DCR"),
    ]
    softmax = helper.make_graph(
        [node("Exp", ["qh_grouped"], ["qh_exp"]),
         node("ReduceSum", ["qh_exp", "qh_class_axis"], ["qh_total"], keepdims=1),
         node("Div", ["qh_exp", "qh_total"], ["qh_probs"]),
         node("Concat", ["qh_n", "qh_blocks_classes", "qh_hw"], ["qh_probs_shape"], axis=0),
         node("Reshape", ["qh_probs", "qh_probs_shape"], ["qh_probs_blocks"]),
         node("DepthToSpace", ["qh_probs_blocks"], ["qh_probabilities"], blocksize=k, mode="DCR")],
        "with_probabilities", [], [helper.make_tensor_value_info("qh_probabilities", TensorProto.FLOAT, None)])
    empty = numpy_helper.from_array(np.zeros((0, n_classes, 0, 0), np.float32), "qh_empty")
    without = helper.make_graph([node("Constant", [], ["qh_none"], value=empty)], "without_probabilities", [],
                                [helper.make_tensor_value_info("qh_none", TensorProto.FLOAT, None)])
    head.append(node("If", [PROBABILITIES_SWITCH], [OUTPUT_NAME], then_branch=softmax, else_branch=without))

    body = _ancestors(list(graph.node), {w["features"]})
    used = {i for n in body for i in n.input}
    initializers = [i for i in graph.initializer if i.name in used]
    initializers += [numpy_helper.from_array(v, name) for name, v in tensors.items() if v is not None]
    switch = helper.make_tensor_value_info(PROBABILITIES_SWITCH, TensorProto.BOOL, [])
    new = helper.make_graph(body + head, graph.name, list(graph.input) + [switch], list(graph.output), initializers)
    rewritten = helper.make_model(new, opset_imports=model.opset_import, ir_version=model.ir_version,
                                  producer_name="openeo_cloudmask.models.training.fast_head")
    import onnx

    onnx.checker.check_model(rewritten)
    return rewritten


def compare(original: bytes, rewritten: bytes, seed: int = 0) -> float:
    """Max probability difference of the two graphs; raises if any class index differs or the switch is broken."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    dn = (rng.random((2, 4, 192, 256)) * 6000).astype(np.float32)
    dn[:, :, :40, :50] = 0  # a nodata corner
    dn[1, :, 100:, 100:] *= 0.05  # dark ground
    a = ort.InferenceSession(original, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(rewritten, providers=["CPUExecutionProvider"])
    probs_a, classes_a = a.run([OUTPUT_NAME, CLASSES_NAME], {INPUT_NAME: dn})
    probs_b, classes_b = b.run([OUTPUT_NAME, CLASSES_NAME], {INPUT_NAME: dn})
    (classes_off,) = b.run([CLASSES_NAME], {INPUT_NAME: dn, PROBABILITIES_SWITCH: np.array(False)})
    if not (np.array_equal(classes_a, classes_b) and np.array_equal(classes_a, classes_off)):
        raise RuntimeError("the quarter-resolution head changes class indices; not written")
    return float(np.abs(probs_a - probs_b).max())


def rewrite(path: str | Path, out: str | Path | None = None) -> float:
    """Rewrite the exported graph at ``path`` (to ``out``, default in place); returns the probability difference."""
    import onnx

    path = Path(path)
    original = path.read_bytes()
    rewritten = quarter_resolution_graph(onnx.load_from_string(original)).SerializeToString()
    diff = compare(original, rewritten)
    if diff > TOLERANCE:
        raise RuntimeError(f"{path}: the quarter-resolution head moves probabilities by {diff:.2g} > {TOLERANCE}; not written")
    Path(out or path).write_bytes(rewritten)
    return diff


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite an exported model's head at quarter resolution (same answers).")
    parser.add_argument("onnx", type=Path, help="an ONNX file as export_onnx wrote it (with its full-resolution head)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: in place)")
    args = parser.parse_args(argv)
    if not args.onnx.is_file():
        parser.error(f"{args.onnx}: no such file")
    try:
        diff = rewrite(args.onnx, args.out)
    except (ValueError, RuntimeError) as err:
        print(f"{args.onnx}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out or args.onnx}: the same class indices, probabilities within {diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
