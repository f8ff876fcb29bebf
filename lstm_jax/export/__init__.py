"""Deploying trained models: ONNX with the standard recurrent operators, and StableHLO.

* :func:`to_onnx` writes a stack of LSTM/GRU/SimpleRNN layers (and its pooling and dense head)
  as ONNX's own ``LSTM``/``GRU``/``RNN`` operators, one node per layer, with symbolic batch and
  time dimensions, for onnxruntime and every other ONNX runtime.
* :func:`from_onnx` reads such operators (written by this module, PyTorch's
  ``torch.onnx.export`` or others) and the ``Gemm``/``MatMul`` head after them back into an
  lstm_jax layer and its params.
* :func:`to_stablehlo` / :func:`load_stablehlo` serialise a jitted inference function through
  ``jax.export`` with symbolic batch and time: the JAX-native serving path.

``onnx`` and ``onnxruntime`` (the ``export`` extra) are imported only when an ONNX function
runs; ``import lstm_jax`` does not import this module.
"""

from lstm_jax.export.model import RecurrentModel, RecurrentModelParams, as_recurrent_model
from lstm_jax.export.stablehlo import load_stablehlo, to_stablehlo


def to_onnx(layer, params, path=None, **options):
    """ONNX model of ``layer`` with ``params``, written to ``path``; see
    :func:`lstm_jax.export.onnx_export.to_onnx` for the options and the graph's inputs.

    Examples:
      >>> import jax, lstm_jax as lj
      >>> rnn = lj.GRU(4, bidirectional=True)
      >>> proto = to_onnx(rnn, rnn.init(jax.random.key(0), 3))  # path=None: not written
      >>> [n.op_type for n in proto.graph.node]
      ['Transpose', 'GRU', 'Transpose', 'Reshape', 'Transpose', 'Identity']
      >>> [o.name for o in proto.graph.output]  # outputs, then the final state per layer
      ['y', 'h_0']
    """
    _need_onnx("to_onnx")
    from lstm_jax.export.onnx_export import to_onnx as impl

    return impl(layer, params, path, **options)


def from_onnx(path):
    """``(layer, params)`` read from an ONNX file; see
    :func:`lstm_jax.export.onnx_import.from_onnx`."""
    _need_onnx("from_onnx")
    from lstm_jax.export.onnx_import import from_onnx as impl

    return impl(path)


def _need_onnx(where: str) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError(
            f"`{where}` needs the `onnx` package: pip install 'lstm_jax[export]'."
        ) from None


__all__ = [
    "RecurrentModel",
    "RecurrentModelParams",
    "as_recurrent_model",
    "from_onnx",
    "load_stablehlo",
    "to_onnx",
    "to_stablehlo",
]
