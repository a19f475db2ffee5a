"""Pooling layers over NCHW inputs: max (gradient to the arg-max only), average, global average.

Windows are visited one kernel offset at a time over strided slices of the
whole batch, which is cheaper than materialising every window and works for
any window, stride and padding.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import cuda_kernels
from .kernels import out_size, pad_hw, window_slices
from .layer import Layer, PassThrough


class _Pool2D(Layer):
    def __init__(self, kernel, stride=None, padding: int = 0):
        super().__init__()
        self.kh, self.kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = int(stride) if stride is not None else self.kh
        self.padding = int(padding)

    def output_shape(self, in_shape):
        c, h, w = in_shape
        oh = out_size(h, self.kh, self.stride, self.padding)
        ow = out_size(w, self.kw, self.stride, self.padding)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"{type(self).__name__} window {self.kh}x{self.kw} does not fit {h}x{w}")
        return (c, oh, ow)

    def flops(self, in_shape) -> int:
        c, oh, ow = self.output_shape(in_shape)
        return c * oh * ow * self.kh * self.kw

    def _slices(self, oh, ow):
        return window_slices(self.kh, self.kw, self.stride, oh, ow)

    def _unpad(self, dx):
        p = self.padding
        return dx[:, :, p:dx.shape[2] - p, p:dx.shape[3] - p] if p else dx

    def __repr__(self):
        return f"{type(self).__name__}({self.kh}x{self.kw}, stride {self.stride})"


class MaxPool2D(_Pool2D, PassThrough):
    """The gradient goes to the first maximum of each window. With array code, backward
    finds it again by comparing the input with the output, which is cheaper than storing
    an arg-max; the CUDA kernels store the arg-max (one int32 per output) instead."""
    _arg = None

    def forward(self, x, train):
        if self._take_bypass():
            return x
        launch = cuda_kernels.launcher_for(x, "maxpool", self.backend)
        if launch is not None:
            y, arg = cuda_kernels.maxpool_forward(x, self.kh, self.kw, self.stride, self.padding,
                                                  launch=launch)
            if train:
                self._arg, self._x_shape = arg, x.shape
            return y
        _, oh, ow = self.output_shape(x.shape[1:])
        xpad = pad_hw(x, self.padding, value=-np.inf)
        y = None
        for _, hs, ws in self._slices(oh, ow):
            v = xpad[:, :, hs, ws]
            y = v.copy() if y is None else get_array_module(x).maximum(y, v, out=y)
        if train:
            self._xpad, self._y = xpad, y
        return y

    def backward(self, dy):
        if self._passing:
            return dy
        if self._arg is not None:
            arg, self._arg = self._arg, None
            launch = cuda_kernels.launcher_for(dy, "maxpool", self.backend)
            return cuda_kernels.maxpool_backward(dy, arg, self._x_shape, self.kh, self.kw,
                                                 self.stride, self.padding, launch=launch)
        xp = get_array_module(dy)
        dx = xp.zeros(self._xpad.shape, dtype=dy.dtype)
        taken = xp.zeros(dy.shape, dtype=bool)
        disjoint = self.stride >= max(self.kh, self.kw)
        for _, hs, ws in self._slices(*dy.shape[2:]):
            first = self._xpad[:, :, hs, ws] == self._y
            first &= ~taken
            taken |= first
            if disjoint:                       # each input belongs to one window: assign
                xp.multiply(first, dy, out=dx[:, :, hs, ws])
            else:
                dx[:, :, hs, ws] += first * dy
        self._xpad = self._y = None
        return self._unpad(dx)


class AvgPool2D(_Pool2D):
    """Average over each window; zero padding counts towards the mean."""

    def forward(self, x, train):
        _, oh, ow = self.output_shape(x.shape[1:])
        xpad = pad_hw(x, self.padding)
        y = None
        for _, hs, ws in self._slices(oh, ow):
            y = xpad[:, :, hs, ws].copy() if y is None else y + xpad[:, :, hs, ws]
        if train:
            self._padded_shape = xpad.shape
        return y / (self.kh * self.kw)

    def backward(self, dy):
        xp = get_array_module(dy)
        dx = xp.zeros(self._padded_shape, dtype=dy.dtype)
        share = dy / (self.kh * self.kw)
        for _, hs, ws in self._slices(*dy.shape[2:]):
            dx[:, :, hs, ws] += share
        return self._unpad(dx)


class GlobalAvgPool(Layer):
    """(N, C, H, W) -> (N, C): the mean of each feature map."""

    def output_shape(self, in_shape):
        return (in_shape[0],)

    def flops(self, in_shape) -> int:
        c, h, w = in_shape
        return c * h * w

    def forward(self, x, train):
        self._x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        xp = get_array_module(dy)
        n, c, h, w = self._x_shape
        return xp.broadcast_to((dy / (h * w))[:, :, None, None], self._x_shape).copy()
