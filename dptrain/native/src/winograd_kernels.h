/* The Winograd F(2x2, 3x3) kernels for one floating type: WG_REAL, names through WG_SUF
 * (included twice by winograd.c; see there for the layouts). */
#include <string.h>

typedef WG_REAL WG_SUF(wg_t);
#define T WG_SUF(wg_t)

/* Row r of a plane (h rows of w) into buf[0 .. width), shifted right by pad: buf[j] is
 * column j - pad, zero outside the image (and the whole row zero when r is outside). */
static inline void WG_SUF(wg_load_row)(const T *DPN_RESTRICT plane, int64_t r, int64_t h,
                                       int64_t w, int64_t pad, int64_t width,
                                       T *DPN_RESTRICT buf)
{
    if (r < 0 || r >= h) {
        memset(buf, 0, (size_t)width * sizeof(T));
        return;
    }
    int64_t n = w < width - pad ? w : width - pad;
    memset(buf, 0, (size_t)pad * sizeof(T));
    memcpy(buf + pad, plane + r * w, (size_t)n * sizeof(T));
    if (pad + n < width)
        memset(buf + pad + n, 0, (size_t)(width - pad - n) * sizeof(T));
}

/* The image's part of a row buffer (buf[j] is column j - pad) into a plane row of w. */
static inline void WG_SUF(wg_store_row)(T *DPN_RESTRICT plane_row, const T *DPN_RESTRICT buf,
                                        int64_t pad, int64_t w)
{
    memcpy(plane_row, buf + pad, (size_t)w * sizeof(T));
}

/* V (16, c, P) = B^T d B of every 4x4 input tile (stride 2) of x (n, c, h, w) padded by pad
 * at the top and left (and zeros beyond the bottom and right). */
DPN_EXPORT void WG_SUF(dpn_wino_input)(const T *DPN_RESTRICT x, T *DPN_RESTRICT v, int64_t n,
                                       int64_t c, int64_t h, int64_t w, int64_t pad,
                                       int64_t th, int64_t tw, int64_t kstride)
{
    const int64_t width = 2 * tw + 2, P = n * th * tw;
    T buf[4][width], e[4][width];
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            const T *plane = x + (b * c + ch) * h * w;
            for (int64_t t = 0; t < th; t++) {
                for (int i = 0; i < 4; i++)
                    WG_SUF(wg_load_row)(plane, 2 * t - pad + i, h, w, pad, width, buf[i]);
                for (int64_t j = 0; j < width; j++) {       /* B^T over the rows */
                    e[0][j] = buf[0][j] - buf[2][j];
                    e[1][j] = buf[1][j] + buf[2][j];
                    e[2][j] = buf[2][j] - buf[1][j];
                    e[3][j] = buf[1][j] - buf[3][j];
                }
                T *out = v + ch * P + (b * th + t) * tw;
                for (int a = 0; a < 4; a++) {               /* then over the columns */
                    const T *ea = e[a];
                    T *o0 = out + (4 * a) * kstride, *o1 = o0 + kstride, *o2 = o1 + kstride,
                      *o3 = o2 + kstride;
                    for (int64_t s = 0; s < tw; s++) {
                        T d0 = ea[2 * s], d1 = ea[2 * s + 1], d2 = ea[2 * s + 2],
                          d3 = ea[2 * s + 3];
                        o0[s] = d0 - d2;
                        o1[s] = d1 + d2;
                        o2[s] = d2 - d1;
                        o3[s] = d1 - d3;
                    }
                }
            }
        }
}

/* y (n, k, oh, ow) = A^T m A of every tile of M (16, k, P), plus bias[k] when bias is not NULL. */
DPN_EXPORT void WG_SUF(dpn_wino_output)(const T *DPN_RESTRICT m, const T *DPN_RESTRICT bias,
                                        T *DPN_RESTRICT y, int64_t n, int64_t k, int64_t oh,
                                        int64_t ow, int64_t th, int64_t tw, int64_t kstride)
{
    const int64_t width = 2 * tw, P = n * th * tw;
    T r[2][4][tw], out[2][width];
    for (int64_t b = 0; b < n; b++)
        for (int64_t ko = 0; ko < k; ko++) {
            const T add = bias ? bias[ko] : (T)0;
            T *plane = y + (b * k + ko) * oh * ow;
            for (int64_t t = 0; t < th; t++) {
                const T *in = m + ko * P + (b * th + t) * tw;
                for (int col = 0; col < 4; col++) {          /* A^T over the rows */
                    const T *m0 = in + col * kstride, *m1 = m0 + 4 * kstride,
                            *m2 = m1 + 4 * kstride, *m3 = m2 + 4 * kstride;
                    for (int64_t s = 0; s < tw; s++) {
                        r[0][col][s] = m0[s] + m1[s] + m2[s];
                        r[1][col][s] = m1[s] - m2[s] - m3[s];
                    }
                }
                for (int i = 0; i < 2; i++)                  /* then over the columns */
                    for (int64_t s = 0; s < tw; s++) {
                        out[i][2 * s] = r[i][0][s] + r[i][1][s] + r[i][2][s] + add;
                        out[i][2 * s + 1] = r[i][1][s] - r[i][2][s] - r[i][3][s] + add;
                    }
                for (int i = 0; i < 2 && 2 * t + i < oh; i++)
                    memcpy(plane + (2 * t + i) * ow, out[i], (size_t)ow * sizeof(T));
            }
        }
}

/* dM (16, k, P) = A dY A^T of every 2x2 tile of dy (n, k, oh, ow) (zeros beyond its edges),
 * the adjoint of dpn_wino_output; db[k] += the sum of dy over its samples and pixels (the bias
 * gradient, accumulated in double). */
DPN_EXPORT void WG_SUF(dpn_wino_output_adjoint)(const T *DPN_RESTRICT dy, T *DPN_RESTRICT dm,
                                                double *DPN_RESTRICT db, int64_t n, int64_t k,
                                                int64_t oh, int64_t ow, int64_t th, int64_t tw, int64_t kstride)
{
    const int64_t width = 2 * tw, P = n * th * tw;
    T buf[2][width], g[4][width], acc[width];
    for (int64_t b = 0; b < n; b++)
        for (int64_t ko = 0; ko < k; ko++) {
            const T *plane = dy + (b * k + ko) * oh * ow;
            for (int64_t j = 0; j < width; j++)
                acc[j] = 0;
            for (int64_t t = 0; t < th; t++) {
                for (int i = 0; i < 2; i++)
                    WG_SUF(wg_load_row)(plane, 2 * t + i, oh, ow, 0, width, buf[i]);
                for (int64_t j = 0; j < width; j++) {       /* A over the rows */
                    acc[j] += buf[0][j] + buf[1][j];
                    g[0][j] = buf[0][j];
                    g[1][j] = buf[0][j] + buf[1][j];
                    g[2][j] = buf[0][j] - buf[1][j];
                    g[3][j] = -buf[1][j];
                }
                T *out = dm + ko * P + (b * th + t) * tw;
                for (int a = 0; a < 4; a++) {               /* then over the columns */
                    const T *ga = g[a];
                    T *o0 = out + (4 * a) * kstride, *o1 = o0 + kstride, *o2 = o1 + kstride,
                      *o3 = o2 + kstride;
                    for (int64_t s = 0; s < tw; s++) {
                        T e0 = ga[2 * s], e1 = ga[2 * s + 1];
                        o0[s] = e0;
                        o1[s] = e0 + e1;
                        o2[s] = e0 - e1;
                        o3[s] = -e1;
                    }
                }
            }
            double sum = 0.0;      /* column sums in T (vectorised), their total in double */
            for (int64_t j = 0; j < width; j++)
                sum += acc[j];
            db[ko] += sum;
        }
}

/* dx (n, c, h, w) = the adjoint of dpn_wino_input applied to dV (16, c, P): B dV B^T of every
 * tile added into its overlapping 4x4 window, cropped to the image. Written, not accumulated:
 * each window row is final once the next tile row has added its part, so two carry rows
 * replace a zeroed padded plane. */
DPN_EXPORT void WG_SUF(dpn_wino_input_adjoint)(const T *DPN_RESTRICT dv, T *DPN_RESTRICT dx,
                                               int64_t n, int64_t c, int64_t h, int64_t w,
                                               int64_t pad, int64_t th, int64_t tw, int64_t kstride)
{
    const int64_t width = 2 * tw + 2, P = n * th * tw;
    T rr[4][width], carry[2][width];
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            T *plane = dx + (b * c + ch) * h * w;
            memset(carry, 0, sizeof(carry));
            for (int64_t t = 0; t < th; t++) {
                const T *in = dv + ch * P + (b * th + t) * tw;
                for (int a = 0; a < 4; a++) {   /* B over the columns: 4 outputs per tile */
                    const T *v0 = in + (4 * a) * kstride, *v1 = v0 + kstride,
                            *v2 = v1 + kstride, *v3 = v2 + kstride;
                    T *ra = rr[a];
                    ra[0] = v0[0];
                    ra[1] = v1[0] - v2[0] + v3[0];
                    for (int64_t s = 1; s < tw; s++) {
                        ra[2 * s] = v0[s] + v1[s - 1] + v2[s - 1] - v0[s - 1];
                        ra[2 * s + 1] = v1[s] - v2[s] + v3[s] - v3[s - 1];
                    }
                    ra[2 * tw] = v1[tw - 1] + v2[tw - 1] - v0[tw - 1];
                    ra[2 * tw + 1] = -v3[tw - 1];
                }
                for (int64_t j = 0; j < width; j++) {       /* then over the rows */
                    T r0 = carry[0][j] + rr[0][j];
                    T r1 = carry[1][j] + rr[1][j] - rr[2][j] + rr[3][j];
                    carry[0][j] = rr[1][j] + rr[2][j] - rr[0][j];
                    carry[1][j] = -rr[3][j];
                    rr[0][j] = r0;
                    rr[1][j] = r1;
                }
                for (int i = 0; i < 2; i++) {
                    int64_t r = 2 * t + i - pad;
                    if (r >= 0 && r < h)
                        WG_SUF(wg_store_row)(plane + r * w, rr[i], pad, w);
                }
            }
            for (int i = 0; i < 2; i++) {
                int64_t r = 2 * th + i - pad;
                if (r >= 0 && r < h)
                    WG_SUF(wg_store_row)(plane + r * w, carry[i], pad, w);
            }
        }
}

#undef T
