"""How each torch operation moves channels: the tables the tracer looks names up in.

Names are those a ``TorchFunctionMode`` sees (``func.__name__``: ``silu``, ``add``, ``__rsub__``, ``cat`` ...). An
operation that is in none of these tables and touches a traced tensor is *unsupported*: the channels it reads become
unprunable, with its name in the reason. Adding support for an operation means adding its name here (and, for a new
kind of mapping, a handler in :mod:`pruning.trace`).

"Zero-preserving" matters for exactness: a masked channel (BN gamma and beta set to 0) carries exact zeros only
through operations that map 0 to 0; after e.g. a sigmoid it carries 0.5, and dropping it would change the next layer.
"""

from __future__ import annotations

__all__ = ["ZERO_PRESERVING", "NOT_ZERO_PRESERVING", "ADD_OPS", "RSUB_OPS", "MUL_OPS", "DIV_OPS", "RDIV_OPS",
           "CLAMP_OPS", "REDUCE_OPS", "RESHAPE_OPS", "PERMUTE_OPS", "TRANSPOSE_OPS", "CAT_OPS", "SPLIT_OPS",
           "SOFTMAX_OPS", "IGNORED_OPS"]

# Per-channel maps with f(0) == 0 that keep the channel dim: activations, pooling, resampling, copies and casts.
ZERO_PRESERVING = frozenset({
    "relu", "relu_", "silu", "silu_", "hardswish", "hardswish_", "leaky_relu", "leaky_relu_", "relu6", "hardtanh",
    "hardtanh_", "tanh", "tanh_", "gelu", "mish", "elu", "elu_", "selu", "selu_", "celu", "celu_", "softsign",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "neg", "__neg__",
    "negative", "abs", "abs_", "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "to", "type",
    "cpu", "cuda", "requires_grad_", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices", "interpolate", "upsample",
    "upsample_nearest", "upsample_bilinear", "square", "identity",
})

# Per-channel maps that keep the channel dim but turn 0 into something else.
NOT_ZERO_PRESERVING = frozenset({
    "sigmoid", "sigmoid_", "hardsigmoid", "hardsigmoid_", "softplus", "exp", "exp_", "cos", "logsigmoid",
    "log_sigmoid", "reciprocal", "reciprocal_",
})

ADD_OPS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__isub__",
                     "subtract"})
RSUB_OPS = frozenset({"rsub", "__rsub__"})  # other - self
MUL_OPS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"})
DIV_OPS = frozenset({"div", "div_", "__truediv__", "__itruediv__", "__div__", "true_divide", "divide"})
RDIV_OPS = frozenset({"__rtruediv__", "__rdiv__"})  # other / self
CLAMP_OPS = frozenset({"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_"})

# Reductions over a ``dim`` argument: keep the channel dim when neither dim 0 nor dim 1 is reduced.
REDUCE_OPS = frozenset({"mean", "sum", "amax", "amin"})

# Shape changes judged by their result: the channel dim survives when out.shape[:2] == in.shape[:2].
RESHAPE_OPS = frozenset({"view", "reshape", "flatten", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "view_as",
                         "reshape_as", "expand", "expand_as", "unflatten"})
PERMUTE_OPS = frozenset({"permute"})
TRANSPOSE_OPS = frozenset({"transpose", "transpose_", "swapaxes", "swapdims"})

CAT_OPS = frozenset({"cat", "concat", "concatenate"})
SPLIT_OPS = frozenset({"split", "chunk", "tensor_split", "split_with_sizes", "unsafe_split", "unsafe_chunk",
                       "unbind"})
SOFTMAX_OPS = frozenset({"softmax", "log_softmax"})

# Calls that read metadata or fill tensors in place without reading traced values: never a channel dependency.
IGNORED_OPS = frozenset({"dim", "size", "numel", "__get__", "__len__", "__bool__", "__format__", "__repr__",
                         "is_floating_point", "element_size", "stride", "data_ptr", "is_contiguous", "get_device"})
