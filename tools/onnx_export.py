"""ONNX for `python -m tools.export --onnx`: the exported student (OUT-symbol.json + OUT-0000.params)
converted by MXNet 1.9.1's own exporter (`mx.onnx.export_model`) and run with onnxruntime.

What that exporter needs and does, as found with onnx 1.17.0 and onnxruntime 1.18.1 (the pins):
- it imports `onnx.mapping`, which onnx 1.19 removed: `require()` refuses such an onnx;
- its operator translations are written for opsets 12 and 13 (`OPSET`), but it stamps the model
  with the newest opset the installed onnx knows (22 for 1.17.0): the model is declared opset 13,
  the semantics its nodes have. (Its own graph check also uses the newest opset, so a network with
  a Reduce* node, whose axes became an input in opset 18, is refused there; none of the project's
  networks has one: they convert to Conv, BatchNormalization, Relu, Add, Concat, MaxPool,
  AveragePool, GlobalAveragePool, Flatten, Gemm, and Shape/ConstantOfShape/Slice for PyramidNet's
  zero channels);
- it lists every parameter as a graph input as well as an initializer: they are kept as
  initializers only, so the model has one input, `data` (batch dimension dynamic), and onnxruntime
  can fold constants;
- average pooling in ceil mode (pooling_convention='full', e.g. Gluon's AvgPool2D(ceil_mode=True))
  with count_include_pad (Gluon's default) becomes AveragePool(ceil_mode=1, count_include_pad=1):
  where the last window hangs over the border, MXNet divides by the elements inside the input,
  onnxruntime by the whole kernel (on 1..9 as 3x3, kernel 2, stride 2: MXNet 4.5 for [3, 6],
  onnxruntime 2.25). `unsupported()` finds such a pooling from the shapes before anything is
  converted; PyramidNet's downsampling AvgPool2D(2, 2, ceil_mode=True) meets it when a stage
  starts at an odd side (image_size not a multiple of 4). Any other difference is caught by the
  comparison with MXNet's outputs.
"""
import json
import warnings
from core.errors import ToolError

OPSET = 13


class OnnxError(ToolError, ValueError):
    """A model MXNet's ONNX exporter cannot convert faithfully (one error line, exit status 2)."""


def require():
    """(onnx version, onnxruntime version); UsageError naming what to install when either package is
    missing or onnx is too new for MXNet 1.9.1's exporter."""
    from tools.cli import UsageError
    install = "pip install -c constraints.txt -e '.[onnx]' (onnx==1.17.0, onnxruntime==1.18.1)"
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise UsageError('--onnx needs the onnx and onnxruntime packages (%s): %s' % (e, install))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            import onnx.mapping  # noqa: F401
    except ImportError:
        raise UsageError('--onnx: onnx %s has no onnx.mapping, which MXNet 1.9.1\'s ONNX exporter imports (removed '
                         'in onnx 1.19): %s' % (onnx.__version__, install))
    return onnx.__version__, onnxruntime.__version__


def _ceil_overhangs(size, kernel, stride, pad):
    """Whether ceil-mode pooling over `size` has a last window that hangs over the (padded) border."""
    return (size + 2 * pad - kernel) % stride != 0


def unsupported(symbol_file, input_shape):
    """Reasons (one line each) why the model in `symbol_file`, fed `input_shape`, would not convert
    faithfully: operators without an ONNX translation in MXNet 1.9.1, and ceil-mode average pooling
    with count_include_pad where a window hangs over the border (see the module docstring)."""
    import mxnet as mx
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    import mxnet.onnx.mx2onnx._op_translations  # noqa: F401  (registers the translations)
    with open(symbol_file) as f:
        nodes = json.load(f)['nodes']
    known = set()
    for version, ops in MXNetGraph.registry_.items():
        if version <= OPSET:
            known.update(ops)
    reasons = []
    missing = sorted({n['op'] for n in nodes if n['op'] != 'null' and n['op'] not in known})
    if missing:
        reasons.append('operator(s) %s have no ONNX translation in MXNet 1.9.1' % ', '.join(missing))
    internals = None
    for n in nodes:
        attrs = n.get('attrs', {})
        if n['op'] != 'Pooling' or attrs.get('pool_type') != 'avg' or attrs.get('global_pool') == 'True' or \
                attrs.get('pooling_convention') != 'full' or attrs.get('count_include_pad', 'True') != 'True':
            continue
        if internals is None:
            internals = mx.sym.load(symbol_file).get_internals()
        source = internals[n['name'] + '_output'].get_children()
        shape = source.infer_shape(data=tuple(input_shape))[1][0]
        kernel = json.loads(attrs['kernel'].replace('(', '[').replace(')', ']'))
        stride = json.loads(attrs.get('stride', '(1, 1)').replace('(', '[').replace(')', ']')) or [1] * len(kernel)
        pad = json.loads(attrs.get('pad', '(0, 0)').replace('(', '[').replace(')', ']')) or [0] * len(kernel)
        sides = shape[2:]
        if any(_ceil_overhangs(s, k, st, p) for s, k, st, p in zip(sides, kernel, stride, pad)):
            reasons.append('operator Pooling %r (average, ceil mode, count_include_pad) on a %s map: its last window '
                           'hangs over the border, where MXNet divides by the elements inside the input and '
                           'onnxruntime by the whole kernel %s' % (n['name'], 'x'.join(map(str, sides)),
                                                                  'x'.join(map(str, kernel))))
    return reasons


def write(symbol_file, params_file, input_shape, path):
    """Convert with mx.onnx.export_model to `path` (input `data`, batch dimension dynamic), declare
    opset OPSET, keep parameters as initializers only, and check it with onnx.checker. OnnxError
    when the exporter refuses an operator."""
    import numpy as np
    import mxnet as mx
    import onnx
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')             # onnx.mapping's deprecation warnings
        try:
            mx.onnx.export_model(symbol_file, params_file, in_shapes=[tuple(input_shape)], in_types=np.float32,
                                 onnx_file_path=path, dynamic=True,
                                 dynamic_input_shapes=[(None,) + tuple(input_shape[1:])])
        except (NotImplementedError, AttributeError, onnx.checker.ValidationError) as e:
            raise OnnxError('MXNet 1.9.1\'s ONNX exporter cannot convert this network: %s'
                            % ' '.join(str(e).split())[:300])
    model = onnx.load(path)
    del model.opset_import[:]
    model.opset_import.extend([onnx.helper.make_opsetid('', OPSET)])
    params = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in params]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def run(path, x):
    """Outputs of the ONNX model at `path` on the numpy batch `x`, with onnxruntime on the CPU."""
    import numpy as np
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})[0]


class OnnxNet(object):
    """An exported OUT.onnx as a callable `x (NDArray) -> logits (NDArray)`, run by onnxruntime on
    the CPU, for the evaluation loop that scores Gluon networks (tools.evaluate --onnx)."""

    def __init__(self, path):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        except Exception as e:             # onnxruntime's own exception types: a file it cannot load
            from tools.cli import UsageError
            raise UsageError('%s is not an ONNX model onnxruntime can load (%s): export it again with '
                             'python -m tools.export --onnx' % (path, str(e).strip().splitlines()[0][:160]))
        first = self.session.get_inputs()[0]
        self.input_name, self.input_shape = first.name, first.shape

    def __call__(self, x):
        import numpy as np
        import mxnet as mx
        try:
            out = self.session.run(None, {self.input_name: np.asarray(x.asnumpy(), np.float32)})[0]
        except Exception as e:             # onnxruntime's own exception types: inputs the model does not take
            from tools.cli import UsageError
            raise UsageError('onnxruntime cannot run the model on inputs of shape %s (%s): score it on the data it '
                             'was exported for' % ('x'.join(map(str, x.shape)), str(e).strip().splitlines()[0][:200]))
        return mx.nd.array(out, ctx=x.context)
