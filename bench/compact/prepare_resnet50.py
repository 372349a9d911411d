"""Make the benchmark's ResNet-50 batch-agnostic at opset 13 (compact mode needs opset 11+).

Usage: python bench/compact/prepare_resnet50.py IN.onnx OUT.onnx

IN is bench/make_resnet50_weights.py's output (zoo ResNet-50, IR 3, opset 9, batch 1
fixed, random weights). Its value_info (batch-1 shapes) is dropped; the opset is converted with onnx.version_converter; the input
and output batch dims become the symbolic `N`; the flatten before the classifier
(Reshape to the constant [1, 2048]) reshapes to [0, -1] instead, so any batch passes.
"""

import sys

import numpy as np
import onnx
from onnx import numpy_helper, version_converter


def main():
    src, dst = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    g = model.graph
    inits = {t.name for t in g.initializer}
    # IR 3 lists initializers as inputs; IR 7 (opset 13) does not need to.
    real = [i for i in g.input if i.name not in inits]
    del g.input[:]
    g.input.extend(real)
    model.ir_version = 7
    model = version_converter.convert_version(model, 13)
    g = model.graph
    # The declared intermediate shapes say batch 1; let inference redo them.
    del g.value_info[:]
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    for n in g.node:
        if n.op_type == "Reshape":
            for t in g.initializer:
                if t.name == n.input[1]:
                    t.CopyFrom(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), t.name))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, dst)


if __name__ == "__main__":
    main()
