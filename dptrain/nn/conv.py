"""2-D convolution over NCHW inputs by im2col + one GEMM (no loop over samples or positions).

Columns are built channels-last (see kernels.py); inputs and outputs stay NCHW.

W has shape (c_out, c_in, kh, kw). Forward: columns (N*OH*OW, c_in*kh*kw) times
W^T gives every output at once. Backward (seed 000, 3.3): dW is the correlation
of the input with dY, i.e. dY^T @ columns; dX is col2im of dY W (computed per kernel offset).
"""
from __future__ import annotations

from ..backend import get_array_module
from . import (conv_chunked, conv_direct, conv_native, conv_winograd, cuda_kernels, fused_cpu,
               winograd5_native)
from . import init as initializers
from .kernels import col2im, im2col, out_size
from .layer import Layer


class Conv2D(Layer):
    """2-D convolution, NCHW: (B, c_in, H, W) -> (B, c_out, OH, OW); ``kernel`` an int or
    (kh, kw); ``init`` and ``regularizer`` as for Dense."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding: int = 0,
                 init: str = "he", bias: bool = True, regularizer=None):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.c_in, self.c_out, self.kh, self.kw = int(c_in), int(c_out), int(kh), int(kw)
        self.stride, self.padding = int(stride), int(padding)
        self.init, self.bias, self.regularizer = init, bias, regularizer
        self._cols = self._x_shape = None
        self._direct = False      # the cached columns are conv_direct.py's (NCHW)
        self._chunked = False     # conv_chunked.py's: the cache holds the NHWC input instead
        self._winograd = False    # Winograd's (_winograd_path): the cache holds (x, U)
        self._winograd_path = None
        self._native = False      # conv_native.py's (compiled layout kernels): NHWC input too
        # a linked BatchNorm (nn/fusion.py) that takes this layer's training output blocked
        self.fused_next = None

    def initialize(self, rng) -> None:
        fan_in = self.c_in * self.kh * self.kw
        fan_out = self.c_out * self.kh * self.kw
        shape = (self.c_out, self.c_in, self.kh, self.kw)
        self._add_param("W", initializers.get(self.init)(rng, shape, fan_in, fan_out))
        if self.bias:
            self._add_param("b", [0.0] * self.c_out)

    def output_shape(self, in_shape):
        c, h, w = in_shape
        if c != self.c_in:
            raise ValueError(f"Conv2D expects {self.c_in} input channels, got {c}")
        oh = out_size(h, self.kh, self.stride, self.padding)
        ow = out_size(w, self.kw, self.stride, self.padding)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"Conv2D kernel {self.kh}x{self.kw} does not fit input {h}x{w}")
        return (self.c_out, oh, ow)

    def flops(self, in_shape) -> int:
        _, oh, ow = self.output_shape(in_shape)
        per_out = 2 * self.c_in * self.kh * self.kw + (1 if self.bias else 0)
        return per_out * self.c_out * oh * ow

    def _winograd_module(self, x):
        """conv_winograd (3x3; compiled or NumPy), winograd5_native (5x5, compiled only), or
        None: the Winograd path this input takes."""
        args = (x, self.c_in, self.kh, self.kw, self.stride, self.padding)
        if conv_winograd.applies(*args):
            return conv_winograd
        if winograd5_native.applies(*args, self.compute_backend()):
            return winograd5_native
        return None

    def _w_matrix(self):
        """W as (c_out, kh*kw*c_in), matching the channels-last column layout."""
        return self.params["W"].transpose(0, 2, 3, 1).reshape(self.c_out, -1)

    def forward(self, x, train):
        xp = get_array_module(x)
        n = x.shape[0]
        _, oh, ow = self.output_shape(x.shape[1:])
        if conv_direct.applies(x, self.c_in):          # few channels: NCHW, no transposes
            k = fused_cpu.blocked_pooling(self, x, oh, ow) if train else 0
            self._native = conv_native.applies_direct(x, self.compute_backend())
            geometry = (x, self.kh, self.kw, self.stride, self.padding)
            if self._native:                            # compiled columns, bias in the GEMM
                cols = conv_native.direct_columns(*geometry, oh, ow, k, self.bias)
                y = conv_native.direct_forward(cols, self.params["W"].reshape(self.c_out, -1),
                                               self.params["b"] if self.bias else None, oh, ow)
            else:
                cols = conv_direct.columns(*geometry, k)
                y = conv_direct.forward(cols, self.params["W"].reshape(self.c_out, -1),
                                        self.params["b"] if self.bias else None, oh, ow)
            if train:
                self._cols, self._x_shape, self._direct = cols, x.shape, True
            if k:                  # window offset first, for the linked batch norm only
                self.fused_next.blocked_input = (oh // k, ow // k)
                return y.reshape(n, self.c_out, k * k, -1)
            return y
        self._direct = False
        self._winograd_path = self._winograd_module(x)
        self._winograd = self._winograd_path is not None
        if self._winograd:          # float32 3x3 (16 GEMMs, compiled 36) or 5x5 (compiled 36)
            u = self._winograd_path.filter_transform(self.params["W"], self.compute_backend())
            bias = self.params["b"] if self.bias else None
            kept = None
            if train and self._winograd_path is winograd5_native:   # V kept for backward
                y, kept = winograd5_native.forward(x, u, bias, self.padding, keep=True)
            else:
                y = self._winograd_path.forward(x, u, bias, self.padding)
            self._chunked = False
            if train:                                   # backward reuses the filter transform
                self._cols, self._x_shape = (x, u, kept), x.shape  # forward never writes x
            return y
        self._native = conv_native.applies(x, self.c_in, self.compute_backend())
        if self._native:                                # compiled im2col/col2im + BLAS
            y, x_nhwc = conv_native.forward(x, self.params["W"], self.params["b"] if self.bias
                                            else None, self.stride, self.padding, oh, ow)
            self._chunked = False
            if train:
                self._cols, self._x_shape = x_nhwc, x.shape
            return y
        self._chunked = (conv_chunked.applies(x)
                         and cuda_kernels.launcher_for(x, "im2col", self.backend) is None)
        if self._chunked:                               # float32: a few samples at a time
            x_nhwc = xp.ascontiguousarray(x.transpose(0, 2, 3, 1))
            y = conv_chunked.forward(x_nhwc, self._w_matrix(), self.params["b"] if self.bias
                                     else None, self.kh, self.kw, self.stride, self.padding, oh, ow)
            if train:
                self._cols, self._x_shape = x_nhwc, x.shape
            return xp.ascontiguousarray(y.transpose(0, 3, 1, 2))
        cols = im2col(x.transpose(0, 2, 3, 1), self.kh, self.kw, self.stride, self.padding,
                      self.backend)
        y = cols @ self._w_matrix().T                              # (N*OH*OW, c_out), NHWC
        if self.bias:
            y += self.params["b"]
        if train:
            self._cols, self._x_shape = cols, x.shape
        return xp.ascontiguousarray(y.reshape(n, oh, ow, self.c_out).transpose(0, 3, 1, 2))

    def backward(self, dy):
        if self._direct:
            return self._direct_backward(dy)
        if self._winograd:
            return self._winograd_backward(dy)
        if self._native:
            return self._native_backward(dy)
        xp = get_array_module(dy)
        dy2 = xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(-1, self.c_out)
        if self._chunked:
            return self._chunked_backward(dy2)
        dw = dy2.T @ self._cols                                    # (c_out, kh*kw*c_in)
        self.grads["W"][...] = dw.reshape(self.c_out, self.kh, self.kw, self.c_in).transpose(0, 3, 1, 2)
        if self.bias:
            dy2.sum(axis=0, out=self.grads["b"])
        self._add_regularization_grad()
        self._cols = None
        if not self.needs_input_grad:       # first layer: dX is never used
            return None
        n, c, h, w = self._x_shape
        # dY W, one (c_out x c_in) GEMM per kernel offset: (kh*kw, N*OH*OW, c_in)
        w_offsets = self.params["W"].transpose(2, 3, 0, 1).reshape(self.kh * self.kw, self.c_out, c)
        blocks = xp.matmul(dy2, w_offsets)
        dx = col2im(blocks, (n, h, w, c), self.kh, self.kw, self.stride, self.padding,
                    self.backend)
        return xp.ascontiguousarray(dx.transpose(0, 3, 1, 2))

    def _chunked_backward(self, dy2):
        x_nhwc, self._cols = self._cols, None
        c = self.c_in
        w_offsets = self.params["W"].transpose(2, 3, 0, 1).reshape(self.kh * self.kw, self.c_out, c)
        _, oh, ow = self.output_shape(self._x_shape[1:])
        dw, dx = conv_chunked.backward(x_nhwc, dy2, self._w_matrix(), w_offsets, self.kh, self.kw,
                                       self.stride, self.padding, oh, ow, self.needs_input_grad)
        self.grads["W"][...] = dw.reshape(self.c_out, self.kh, self.kw, c).transpose(0, 3, 1, 2)
        if self.bias:
            dy2.sum(axis=0, out=self.grads["b"])
        self._add_regularization_grad()
        return None if dx is None else dx.transpose(0, 3, 1, 2).copy()

    def _native_backward(self, dy):
        x_nhwc, self._cols = self._cols, None
        dw, db, dx = conv_native.backward(x_nhwc, dy, self.params["W"], self.stride,
                                          self.padding, self.needs_input_grad)
        self.grads["W"][...] = dw
        if self.bias:
            self.grads["b"][...] = db
        self._add_regularization_grad()
        return dx

    def _winograd_backward(self, dy):
        (x, u, kept), self._cols = self._cols, None
        dw, dx = self._winograd_path.backward(x, dy, u, self.padding, self.needs_input_grad,
                                              self.grads["b"] if self.bias else None,
                                              **({} if kept is None else {"kept": kept}))
        self.grads["W"][...] = dw
        self._add_regularization_grad()
        return dx

    def _direct_backward(self, dy):
        cols, self._cols = self._cols, None
        grads = conv_native.direct_weight_grads if self._native else conv_direct.weight_grads
        grads(dy, cols, self.grads["W"], self.grads["b"] if self.bias else None)
        self._add_regularization_grad()
        if not self.needs_input_grad:
            return None
        return conv_direct.input_grad(dy, self.params["W"].reshape(self.c_out, -1), self._x_shape,
                                      self.kh, self.kw, self.stride, self.padding)

    def __repr__(self):
        return (f"Conv2D({self.c_in}->{self.c_out}, {self.kh}x{self.kw}, "
                f"stride {self.stride}, pad {self.padding})")
