#!/usr/bin/env python3
"""Replace the exported scaled-dot-product attention (MatMul, Softmax, MatMul)
with ONNX Runtime's fused ``com.microsoft.MultiHeadAttention`` where the
sequence is long.

Why: at full size the ViT's four global-attention layers attend over 5,184
tokens; the exported pattern writes a 16 x 5184 x 5184 float score matrix
(1.7 GB) per layer, then reads it back for the softmax and again for the
product with V. ONNX Runtime's CPU MultiHeadAttention runs the same
arithmetic as flash attention in blocks that stay in L2 cache: no score
matrix in memory, and 2-9% off a slice of the full-size dynamic int8 encoder
(idle to busy; engines/README.md, "The full-size fresh frame").

Only for engines that run on ONNX Runtime's own CPU provider (the dynamic
int8 variant): TensorRT and OpenVINO do not run this contrib operator, so the
fp32 engines that every backend shares keep the standard pattern.

The pattern, as torch's exporter writes ``scaled_dot_product_attention``:

    q4 (B,N,S,H) -> Mul(c) -\\
                             MatMul -> Softmax -> MatMul(., v4 (B,N,S,H)) -> out4 (B,N,S,H)
    kT (B,N,H,S) -> Mul(c) -/

rewritten as

    Q = Reshape(Transpose(q4, 0213), (0,0,-1)); K = Reshape(Transpose(kT, 0312), (0,0,-1))
    V = Reshape(Transpose(v4, 0213), (0,0,-1))
    O = MultiHeadAttention(Q, K, V, num_heads=N, scale=c*c)   # (B,S,N*H)
    out4 = Transpose(Reshape(O, (0,0,N,H)), 0213)

(the key and value go in as (B,S,D): given in (B,N,S,H) ONNX Runtime takes
them for a past cache and skips the flash path). Where out4 is only
transposed back to (B,S,N,H) and reshaped, the reshape reads O directly.

    .venv/bin/python engines/fuse_attention.py IN.onnx OUT.onnx [--min-tokens 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Queries or keys from this many on: at full size the ViT's global layers (5,184
# tokens) and the detector's attention over the image, not the 576-token windows.
MIN_TOKENS = 1024


def _scalar(graph_consts: dict, name: str) -> float | None:
    t = graph_consts.get(name)
    if t is None:
        return None
    a = numpy_helper.to_array(t)
    return float(a.reshape(-1)[0]) if a.size == 1 else None


def _scores(sm, producer, only_consumer, consts):
    """The scaled scores feeding Softmax ``sm``: (q4, kT, scale, nodes) for either
    form torch's exporters write, MatMul(Mul(q, c), Mul(kT, c)) (scale c*c) or
    Mul(MatMul(q, kT), c); None for anything else (a mask added, a bias)."""
    top = producer.get(sm.input[0])
    if top is None:
        return None
    if top.op_type == "MatMul":
        mq, mk = producer.get(top.input[0]), producer.get(top.input[1])
        if mq is None or mk is None or mq.op_type != "Mul" or mk.op_type != "Mul":
            return None
        if only_consumer(mq.output[0]) is not top or only_consumer(mk.output[0]) is not top:
            return None
        cq, ck = _scalar(consts, mq.input[1]), _scalar(consts, mk.input[1])
        if cq is None or ck is None or only_consumer(top.output[0]) is not sm:
            return None
        return mq.input[0], mk.input[0], cq * ck, (mq, mk, top)
    if top.op_type == "Mul":
        mm1 = producer.get(top.input[0])
        c = _scalar(consts, top.input[1])
        if mm1 is None or mm1.op_type != "MatMul" or c is None:
            return None
        if only_consumer(mm1.output[0]) is not top or only_consumer(top.output[0]) is not sm:
            return None
        return mm1.input[0], mm1.input[1], c, (mm1, top)
    return None


def _shapes(model: onnx.ModelProto) -> dict:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in list(g.value_info) + list(g.input) + list(g.output)
    }


def fuse(model: onnx.ModelProto, min_tokens: int = MIN_TOKENS) -> int:
    """Rewrite ``model`` in place; returns how many attentions were fused."""
    g = model.graph
    consts = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    shapes = _shapes(model)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}

    def only_consumer(name):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in graph_outputs else None

    fused, drop, add = 0, set(), []
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        mm2 = only_consumer(sm.output[0])
        if mm2 is None or mm2.op_type != "MatMul" or mm2.input[0] != sm.output[0]:
            continue
        matched = _scores(sm, producer, only_consumer, consts)
        if matched is None:
            continue
        q4, kT, scale, scored = matched
        v4 = mm2.input[1]
        qs, vs = shapes.get(q4), shapes.get(v4)
        if not qs or not vs or len(qs) != 4 or len(vs) != 4 or None in qs[1:] or None in vs[1:]:
            continue
        _, heads, seq, head = qs
        keys = (shapes.get(kT) or [None] * 4)[-1]
        if max(seq, keys or 0) < min_tokens or vs[1] != heads or vs[3] != head:
            continue
        fused += 1
        p = f"fused_attention_{fused}"
        flat = p + "/bsd_shape"
        split = p + "/bsnh_shape"
        add.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), flat))
        nodes = [
            helper.make_node("Transpose", [q4], [p + "/q_bsnh"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "/q_bsnh", flat], [p + "/q"]),
            helper.make_node("Transpose", [kT], [p + "/k_bsnh"], perm=[0, 3, 1, 2]),
            helper.make_node("Reshape", [p + "/k_bsnh", flat], [p + "/k"]),
            helper.make_node("Transpose", [v4], [p + "/v_bsnh"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "/v_bsnh", flat], [p + "/v"]),
            helper.make_node("MultiHeadAttention", [p + "/q", p + "/k", p + "/v"], [p + "/o"],
                             domain="com.microsoft", num_heads=heads, scale=scale, name=p),
        ]
        out4 = mm2.output[0]
        back = only_consumer(out4)
        after = only_consumer(back.output[0]) if back is not None else None
        if (back is not None and back.op_type == "Transpose"
                and list(helper.get_attribute_value(back.attribute[0])) == [0, 2, 1, 3]
                and after is not None and after.op_type == "Reshape"):
            # (B,S,N,H) reshaped: the same bytes as O, so reshape O itself
            after.input[0] = p + "/o"
            drop.add(id(back))
        else:
            add.append(numpy_helper.from_array(np.array([0, 0, heads, head], np.int64), split))
            nodes += [
                helper.make_node("Reshape", [p + "/o", split], [p + "/o_bsnh"]),
                helper.make_node("Transpose", [p + "/o_bsnh"], [out4], perm=[0, 2, 1, 3]),
            ]
        for n in (*scored, sm, mm2):
            drop.add(id(n))
        # the new nodes take the place of the product with V (topological order holds:
        # all their inputs are produced before mm2)
        idx = list(g.node).index(mm2)
        for k, n in enumerate(nodes):
            g.node.insert(idx + k, n)
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(add)
    if fused and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return fused


def fuse_file(src: str, dst: str, min_tokens: int = MIN_TOKENS) -> int:
    """Fuse ``src`` into ``dst`` (weights stay where they are: small graphs
    inline, large ones in ``dst``.data)."""
    model = onnx.load(src)
    n = fuse(model, min_tokens)
    if n == 0:
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copyfile(src, dst)
        return 0  # nothing fused: the file as it was, byte for byte
    big = sum(t.ByteSize() for t in model.graph.initializer) > 1_800_000_000
    for p in (dst, dst + ".data"):
        if os.path.exists(p):
            os.remove(p)
    onnx.save(model, dst, save_as_external_data=big, location=os.path.basename(dst) + ".data" if big else None)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--min-tokens", type=int, default=MIN_TOKENS,
                    help="fuse attentions whose queries or keys number at least this many (default 1024: at full "
                         "size the ViT's global layers, not its 576-token windows)")
    a = ap.parse_args(argv)
    n = fuse_file(a.src, a.dst, a.min_tokens)
    print(f"[fuse_attention] {a.src} -> {a.dst}: {n} attentions fused")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
