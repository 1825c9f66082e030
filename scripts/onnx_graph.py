"""Rewrites of exported detector graphs that ONNX Runtime runs faster on the CPU, the network unchanged but for
pool_before_silu (which says where it differs): pure functions on an ONNX ModelProto (each returns whether it
changed anything, and leaves a graph it already rewrote as it is), and faster_detector applying them to a file."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _drop_unused_initializers(graph) -> bool:
    """Remove the constants no node reads any more (ONNX Runtime warns about each one at every session start)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [i for i in graph.initializer if i.name not in used]
    for i in unused:
        graph.initializer.remove(i)
    return bool(unused)


def _forget_shapes(graph, names) -> None:
    """Drop the shape annotations of rewritten tensors (ONNX Runtime warns on stale ones and re-infers them)."""
    kept = [v for v in graph.value_info if v.name not in set(names)]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def dfl_on_last_axis(proto) -> bool:
    """Rewrite Ultralytics' distribution-focal decoding (Transpose to (b, 16, 4, A), Softmax over axis 1, a 1x1
    Conv with the bin values) as Transpose to (b, 4, A, 16), Softmax over the last axis and a MatMul with the same
    bin values: the same numbers in the same memory order, but ONNX Runtime transposes the whole tensor twice for
    a softmax over an inner axis (1.7 of 20 ms at 320 px, one thread). Returns whether it rewrote anything."""
    import onnx
    from onnx import numpy_helper
    g = proto.graph
    made, inits = _producers(g), {i.name: i for i in g.initializer}
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        axis = next((a.i for a in sm.attribute if a.name == "axis"), -1)
        tr, users = made.get(sm.input[0]), _consumers(g, sm.output[0])
        if axis != 1 or tr is None or tr.op_type != "Transpose" or len(users) != 1 or users[0].op_type != "Conv":
            continue
        perm = next(list(a.ints) for a in tr.attribute if a.name == "perm")
        conv = users[0]
        weight = inits.get(conv.input[1])
        if perm != [0, 2, 1, 3] or weight is None or len(conv.input) > 2:
            continue
        bins = numpy_helper.to_array(weight)
        if bins.shape[0] != 1 or bins.shape[2:] != (1, 1):
            continue
        for node, key, value in ((tr, "perm", [0, 1, 3, 2]), (sm, "axis", -1)):
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute(key, value))
        name = conv.input[1] + "_column"
        g.initializer.append(numpy_helper.from_array(bins.reshape(-1, 1), name))
        matmul = onnx.helper.make_node("MatMul", [sm.output[0], name], list(conv.output),
                                       name=conv.name.rsplit("/", 2)[0] + "/MatMul")
        index = list(g.node).index(conv)
        g.node.remove(conv)
        g.node.insert(index, matmul)
        _forget_shapes(g, [tr.output[0], sm.output[0], conv.output[0]])
        return True
    return False


def grey_first_conv(proto) -> bool:
    """For a detector fed grey photos (its three input channels equal): its first convolution on channel 0 alone,
    in float, with the weights of the three channels summed, instead of an int8 convolution of three equal
    channels. A three-channel int8 convolution at full resolution is the network's costliest layer on one thread
    (4.4 of 20 ms at 320 px: so few channels fill no vector); in float on one channel it costs 1.6 ms less. The
    input's quantisation goes with it (it was exact: the photo's levels are k/255); the float sums differ from the
    three int8 products in the last bits, so a few activations round to the next int8 level. Returns whether it
    rewrote anything."""
    import onnx
    from onnx import numpy_helper
    g = proto.graph
    source, made, inits = g.input[0].name, _producers(g), {i.name: i for i in g.initializer}

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = made.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return None
        q, scale, zero = (numpy_helper.to_array(inits[i]) for i in node.input)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [-1 if k == axis else 1 for k in range(q.ndim)] if scale.ndim else []
        return ((q.astype(np.float32) - np.reshape(zero, shape)) * np.reshape(scale, shape)).astype(np.float32)

    for conv in [n for n in g.node if n.op_type == "Conv"]:
        chain, x = [], conv.input[0]
        while x != source and made.get(x) is not None and made[x].op_type in ("QuantizeLinear", "DequantizeLinear"):
            chain.append(made[x])
            x = made[x].input[0]
        if x != source:
            continue
        weight = value(conv.input[1])
        if weight is None or weight.shape[1] != 3:
            return False
        name = conv.input[1].split("_DequantizeLinear")[0] + "_grey"
        g.initializer.append(numpy_helper.from_array(weight.sum(1, keepdims=True), name))
        for k, v in (("_start", 0), ("_end", 1), ("_axis", 1)):
            g.initializer.append(numpy_helper.from_array(np.array([v], np.int64), source + "_channel0" + k))
        g.node.insert(0, onnx.helper.make_node("Slice", [source] + [source + "_channel0" + k for k in
                                                                    ("_start", "_end", "_axis")],
                                               [source + "_channel0"], name=source + "_channel0"))
        weight_node = made.get(conv.input[1])
        conv.input[0], conv.input[1] = source + "_channel0", name
        for node in chain + ([weight_node] if weight_node is not None else []):
            if not any(node.output[0] in n.input for n in g.node):
                g.node.remove(node)
        return True
    return False


def _in_topological_order(graph) -> None:
    """Sort the nodes so each comes after the producers of its inputs (ONNX requires it; a rewrite that moves an
    operation ahead of the ones it used to follow breaks it)."""
    ready = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    order, pending = [], list(graph.node)
    while pending:
        placed = [all(i in ready for i in n.input) for n in pending]
        if not any(placed):
            raise ValueError("the graph has a cycle")
        for n, now in zip(pending, placed):
            if now:
                order.append(n)
                ready.update(n.output)
        pending = [n for n, now in zip(pending, placed) if not now]
    del graph.node[:]
    graph.node.extend(order)


def _silu_before(graph, pool) -> tuple | None:
    """(the convolution output's DequantizeLinear, Sigmoid, Mul, the Mul's DequantizeLinear) of the int8 SiLU
    (x * sigmoid(x), each step quantized) that `pool` reads, or None."""
    made = _producers(graph)

    def step(name, op):  # the node of type `op` that makes `name`, if that is what makes it
        node = made.get(name) if name is not None else None
        return node if node is not None and node.op_type == op else None

    def up(node, op):
        return step(node.input[0], op) if node is not None else None
    dq_out = step(pool.input[0], "DequantizeLinear")
    mul = up(up(dq_out, "QuantizeLinear"), "Mul")
    if mul is None or len(mul.input) != 2:
        return None
    for x, s in (mul.input, mul.input[::-1]):
        dq_x, sigmoid = step(x, "DequantizeLinear"), up(up(step(s, "DequantizeLinear"), "QuantizeLinear"), "Sigmoid")
        if dq_x is not None and sigmoid is not None and sigmoid.input[0] == x:
            return dq_x, sigmoid, mul, dq_out
    return None


def pool_before_silu(proto) -> bool:
    """In an int8 graph, each max pool that alone reads a SiLU moved ahead of it: SiLU(maxpool(x)) instead of
    maxpool(SiLU(x)), the activation then computed on a quarter of the values after the stem's 2x2 pools. Those
    SiLUs run at full, half and quarter resolution, each as two int8 passes in ONNX Runtime (QLinearSigmoid and
    QLinearMul: about a tenth of the network's time at 320 px on one thread). Not the same function everywhere:
    SiLU falls to its minimum (-0.28 at -1.28) and rises after, so the two orders agree in every window whose
    largest input is at least 0 (or whose inputs all lie above -1.28); elsewhere both give values in [-0.28, 0],
    which differ by at most 0.28 (windows of quiet, negative activations). Returns whether it rewrote anything."""
    g = proto.graph
    changed = False
    for pool in [n for n in g.node if n.op_type == "MaxPool"]:
        found = _silu_before(g, pool)
        users = _consumers(g, pool.output[0])
        if found is None or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        dq_x, sigmoid, mul, dq_silu = found
        q_pool = users[0]
        dq_pools = _consumers(g, q_pool.output[0])
        alone = all(len(_consumers(g, name)) == 1 for name in (sigmoid.output[0], mul.output[0], dq_silu.input[0],
                                                               dq_silu.output[0])) \
            and len(_consumers(g, dq_x.output[0])) == 2  # nothing else reads the SiLU, its steps or its input
        if len(dq_pools) != 1 or dq_pools[0].op_type != "DequantizeLinear" or not alone:
            continue
        dq_pool, pooled = dq_pools[0], dq_pools[0].output[0]
        after = _consumers(g, pooled)
        pool.input[0] = dq_x.output[0]
        for node in (q_pool, dq_pool):  # max pooling keeps the scale of what it pools
            node.input[1], node.input[2] = dq_x.input[1], dq_x.input[2]
        for node in after:
            node.input[:] = [dq_silu.output[0] if i == pooled else i for i in node.input]
        sigmoid.input[0] = pooled
        mul.input[:] = [pooled if i == dq_x.output[0] else i for i in mul.input]
        changed = True
    if changed:
        _in_topological_order(g)
        del g.value_info[:]
    return changed


def faster_detector(path: Path, grey: bool) -> Path:
    """An exported detector rewritten in place where ONNX Runtime runs it faster on the CPU: the box decoding's
    softmax on the last axis (dfl_on_last_axis: the same numbers) and, in an int8 graph, the stem's max pools
    ahead of their SiLUs (pool_before_silu: the same wherever a window holds a positive activation; chosen on
    the validation sets, where it cost nothing) and, for a grey int8 detector (`grey`: it is fed grey photos), its
    first convolution on one channel in float (grey_first_conv). A float graph is left to the int8 quantizer as
    it is. Idempotent."""
    import onnx
    proto = onnx.load(str(path))
    quantized = any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    changed = dfl_on_last_axis(proto)
    changed = (quantized and pool_before_silu(proto)) or changed
    changed = (grey and quantized and grey_first_conv(proto)) or changed
    if _drop_unused_initializers(proto.graph) or changed:
        onnx.save(proto, str(path))
    return Path(path)
