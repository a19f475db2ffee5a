/* The layout kernels of conv_layout.c for one floating type (included once per type with
 * REAL and SUF defined): NCHW <-> NHWC transposes and channels-last im2col / col2im. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUF)

/* x (n, c, hw) -> out (n, hw, c). */
DPN_EXPORT void FN(dpn_conv_to_nhwc)(const REAL *DPN_RESTRICT x, int64_t n, int64_t c,
                                     int64_t hw, REAL *DPN_RESTRICT out)
{
    for (int64_t s = 0; s < n; s++) {
        const REAL *xs = x + s * c * hw;
        REAL *os = out + s * c * hw;
        for (int64_t p0 = 0; p0 < hw; p0 += 16) {          /* tiles stay in L1 */
            int64_t p1 = p0 + 16 < hw ? p0 + 16 : hw;
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t p = p0; p < p1; p++)
                    os[p * c + ch] = xs[ch * hw + p];
        }
    }
}

/* y (n, hw, c) -> out (n, c, hw), plus bias[c] when bias is not NULL. */
DPN_EXPORT void FN(dpn_conv_to_nchw)(const REAL *DPN_RESTRICT y, const REAL *DPN_RESTRICT bias,
                                     int64_t n, int64_t hw, int64_t c, REAL *DPN_RESTRICT out)
{
    for (int64_t s = 0; s < n; s++) {
        const REAL *ys = y + s * c * hw;
        REAL *os = out + s * c * hw;
        for (int64_t ch = 0; ch < c; ch++) {
            REAL b = bias ? bias[ch] : (REAL)0;
            for (int64_t p = 0; p < hw; p++)
                os[ch * hw + p] = ys[p * c + ch] + b;
        }
    }
}

/* x (n, h, w, c) -> cols (n*oh*ow, kh*kw*c), columns ordered (i, j, c), zeros for padding. */
DPN_EXPORT void FN(dpn_conv_im2col)(const REAL *DPN_RESTRICT x, int64_t n, int64_t h, int64_t w,
                                    int64_t c, int64_t kh, int64_t kw, int64_t stride,
                                    int64_t pad, int64_t oh, int64_t ow, REAL *DPN_RESTRICT cols)
{
    REAL *row = cols;
    for (int64_t s = 0; s < n; s++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++)
                for (int64_t i = 0; i < kh; i++) {
                    int64_t iy = oy * stride + i - pad;
                    for (int64_t j = 0; j < kw; j++, row += c) {
                        int64_t ix = ox * stride + j - pad;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                            for (int64_t ch = 0; ch < c; ch++) row[ch] = 0;
                            continue;
                        }
                        const REAL *src = x + ((s * h + iy) * w + ix) * c;
                        for (int64_t ch = 0; ch < c; ch++) row[ch] = src[ch];
                    }
                }
}

/* The adjoint of im2col: dx (n, h, w, c) = the sum of dcols' entries over the windows that
 * read each input (dx is overwritten). */
DPN_EXPORT void FN(dpn_conv_col2im)(const REAL *DPN_RESTRICT dcols, int64_t n, int64_t h,
                                    int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t stride,
                                    int64_t pad, int64_t oh, int64_t ow, REAL *DPN_RESTRICT dx)
{
    for (int64_t k = 0; k < n * h * w * c; k++) dx[k] = 0;
    const REAL *row = dcols;
    for (int64_t s = 0; s < n; s++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++)
                for (int64_t i = 0; i < kh; i++) {
                    int64_t iy = oy * stride + i - pad;
                    for (int64_t j = 0; j < kw; j++, row += c) {
                        int64_t ix = ox * stride + j - pad;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        REAL *dst = dx + ((s * h + iy) * w + ix) * c;
                        for (int64_t ch = 0; ch < c; ch++) dst[ch] += row[ch];
                    }
                }
}

/* NCHW columns for conv_direct.py's per-sample products: x (n, c, h, w) -> cols (n, rows,
 * oh*ow) with rows = c*kh*kw (+1: a last row of ones when ones, so that the same GEMM adds the
 * bias and its gradient sums dY). Positions come in plain order for block 1, and window offset
 * first for block k: (a, b, oh/k, ow/k) holds the position (k*oh' + a, k*ow' + b). */
DPN_EXPORT void FN(dpn_conv_columns)(const REAL *DPN_RESTRICT x, int64_t n, int64_t c,
                                     int64_t h, int64_t w, int64_t kh, int64_t kw,
                                     int64_t stride, int64_t pad, int64_t oh, int64_t ow,
                                     int64_t block, int64_t ones, REAL *DPN_RESTRICT cols)
{
    int64_t k = block, qh = oh / k, qw = ow / k, q = k * k * qh * qw, step = k * stride;
    REAL *out = cols;
    for (int64_t s = 0; s < n; s++) {
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++, out += q)
                    for (int64_t a = 0; a < k; a++)
                        for (int64_t y = 0; y < qh; y++) {
                            int64_t iy = (y * k + a) * stride + i - pad;
                            const REAL *row = x + ((s * c + ch) * h + iy) * w;
                            int in_rows = iy >= 0 && iy < h;
                            /* the usual case, 2x2 pooling after a stride-1 convolution, the
                             * whole run inside: one row split into its even and odd entries */
                            if (in_rows && k == 2 && stride == 1 && j - pad >= 0
                                && j - pad + 2 * qw <= w) {
                                REAL *o0 = out + (2 * a * qh + y) * qw, *o1 = o0 + qh * qw;
                                const REAL *src = row + j - pad;
                                for (int64_t t = 0; t < qw; t++) {
                                    o0[t] = src[2 * t];
                                    o1[t] = src[2 * t + 1];
                                }
                                continue;
                            }
                            for (int64_t b = 0; b < k; b++) {
                                REAL *o = out + ((a * k + b) * qh + y) * qw;
                                int64_t x0 = b * stride + j - pad;
                                /* the run of t whose ix = x0 + t*step lies inside [0, w) */
                                int64_t t0 = x0 >= 0 ? 0 : (-x0 + step - 1) / step;
                                int64_t t1 = x0 >= w ? 0 : (w - 1 - x0) / step + 1;
                                if (t1 > qw) t1 = qw;
                                if (!in_rows || t0 >= t1) t0 = t1 = qw;
                                const REAL *src = row + x0;
                                for (int64_t t = 0; t < t0; t++) o[t] = 0;
                                if (step == 1)
                                    for (int64_t t = t0; t < t1; t++) o[t] = src[t];
                                else
                                    for (int64_t t = t0; t < t1; t++) o[t] = src[t * step];
                                for (int64_t t = t1; t < qw; t++) o[t] = 0;
                            }
                        }
        if (ones)
            for (int64_t p = 0; p < q; p++) *out++ = 1;
    }
}

#undef FN
#undef CAT
#undef CAT_
