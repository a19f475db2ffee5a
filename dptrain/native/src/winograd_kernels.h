/* The Winograd F(4x4, 3x3) kernels for one floating type: WG_REAL, names through WG_SUF
 * (included twice by winograd.c; see there for the layouts and the matrices). */
#include <string.h>

/* The row pointers of a loop may all point into one local array (or at one zero row):
 * ivdep tells GCC the stores never feed the loop's own loads, which it cannot prove. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(WG_IVDEP)
#define WG_IVDEP _Pragma("GCC ivdep")
#elif !defined(WG_IVDEP)
#define WG_IVDEP
#endif

/* The kernels below are compiled once per common tile-row width (tw = 2, 4, 8 for 8x8, 16x16
 * and 32x32 images) with tw a constant, so that their loops over tiles unroll and vectorise
 * whole, and once more for any other width. */
#ifndef WG_TW_SWITCH
#define WG_TW_SWITCH(tw, call)                                                              \
    do {                                                                                    \
        switch (tw) {                                                                       \
        case 2: { const int64_t WG_TW = 2; call; break; }                                   \
        case 4: { const int64_t WG_TW = 4; call; break; }                                   \
        case 8: { const int64_t WG_TW = 8; call; break; }                                   \
        default: { const int64_t WG_TW = tw; call; break; }                                 \
        }                                                                                   \
    } while (0)
#endif

typedef WG_REAL WG_SUF(wg_t);
#define T WG_SUF(wg_t)

/* V (36, c, P) = B^T d B of every 6x6 input tile (stride 4) of x (n, c, h, w) padded by pad
 * at the top and left (and zeros beyond the bottom and right). */
static inline __attribute__((always_inline)) void WG_SUF(wg_input)(const T *DPN_RESTRICT x, T *DPN_RESTRICT v, int64_t n,
                                       int64_t c, int64_t h, int64_t w, int64_t pad,
                                       int64_t th, int64_t tw, int64_t kstride)
{
    const int64_t width = 4 * tw + 2, P = n * th * tw;
    T zero[w], e[6][width];          /* e's columns outside the image stay zero */
    memset(zero, 0, sizeof(zero));
    memset(e, 0, sizeof(e));
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            const T *plane = x + (b * c + ch) * h * w;
            for (int64_t t = 0; t < th; t++) {
                const T *row[6];             /* rows outside the image read as zeros */
                for (int i = 0; i < 6; i++) {
                    int64_t r = 4 * t - pad + i;
                    row[i] = (r >= 0 && r < h) ? plane + r * w : zero;
                }
                const T *r0 = row[0], *r1 = row[1], *r2 = row[2], *r3 = row[3],
                        *r4 = row[4], *r5 = row[5];
                T *e0 = e[0] + pad, *e1 = e[1] + pad, *e2 = e[2] + pad, *e3 = e[3] + pad,
                  *e4 = e[4] + pad, *e5 = e[5] + pad;
                WG_IVDEP
                for (int64_t j = 0; j < w; j++) {           /* B^T over the rows */
                    T d0 = r0[j], d1 = r1[j], d2 = r2[j], d3 = r3[j], d4 = r4[j], d5 = r5[j];
                    e0[j] = 4 * d0 - 5 * d2 + d4;
                    e1[j] = -4 * (d1 + d2) + d3 + d4;
                    e2[j] = 4 * (d1 - d2) - d3 + d4;
                    e3[j] = 2 * (d3 - d1) - d2 + d4;
                    e4[j] = 2 * (d1 - d3) - d2 + d4;
                    e5[j] = 4 * d1 - 5 * d3 + d5;
                }
                T *out = v + ch * P + (b * th + t) * tw;
                for (int a = 0; a < 6; a++) {               /* then over the columns */
                    const T *ea = e[a];
                    T *o = out + (6 * a) * kstride;
                    WG_IVDEP
                    for (int64_t s = 0; s < tw; s++) {
                        T d0 = ea[4 * s], d1 = ea[4 * s + 1], d2 = ea[4 * s + 2],
                          d3 = ea[4 * s + 3], d4 = ea[4 * s + 4], d5 = ea[4 * s + 5];
                        o[s] = 4 * d0 - 5 * d2 + d4;
                        o[kstride + s] = -4 * (d1 + d2) + d3 + d4;
                        o[2 * kstride + s] = 4 * (d1 - d2) - d3 + d4;
                        o[3 * kstride + s] = 2 * (d3 - d1) - d2 + d4;
                        o[4 * kstride + s] = 2 * (d1 - d3) - d2 + d4;
                        o[5 * kstride + s] = 4 * d1 - 5 * d3 + d5;
                    }
                }
            }
        }
}

DPN_EXPORT void WG_SUF(dpn_wino_input)(const T *DPN_RESTRICT x, T *DPN_RESTRICT v, int64_t n,
        int64_t c, int64_t h, int64_t w, int64_t pad, int64_t th, int64_t tw, int64_t kstride)
{
    WG_TW_SWITCH(tw, WG_SUF(wg_input)(x, v, n, c, h, w, pad, th, WG_TW, kstride));
}

/* y (n, k, oh, ow) = A^T m A of every tile of M (36, k, P), plus bias[k] when bias is not NULL. */
static inline __attribute__((always_inline)) void WG_SUF(wg_output)(const T *DPN_RESTRICT m, const T *DPN_RESTRICT bias,
                                        T *DPN_RESTRICT y, int64_t n, int64_t k, int64_t oh,
                                        int64_t ow, int64_t th, int64_t tw, int64_t kstride)
{
    const int64_t width = 4 * tw, P = n * th * tw;
    T r[4][6][tw], out[4][width];
    for (int64_t b = 0; b < n; b++)
        for (int64_t ko = 0; ko < k; ko++) {
            const T add = bias ? bias[ko] : (T)0;
            T *plane = y + (b * k + ko) * oh * ow;
            for (int64_t t = 0; t < th; t++) {
                const T *in = m + ko * P + (b * th + t) * tw;
                for (int col = 0; col < 6; col++) {          /* A^T over the rows */
                    const T *m0 = in + col * kstride, *m1 = m0 + 6 * kstride,
                            *m2 = m1 + 6 * kstride, *m3 = m2 + 6 * kstride,
                            *m4 = m3 + 6 * kstride, *m5 = m4 + 6 * kstride;
                    WG_IVDEP
                    for (int64_t s = 0; s < tw; s++) {
                        T p12 = m1[s] + m2[s], n12 = m1[s] - m2[s];
                        T p34 = m3[s] + m4[s], n34 = m3[s] - m4[s];
                        r[0][col][s] = m0[s] + p12 + p34;
                        r[1][col][s] = n12 + 2 * n34;
                        r[2][col][s] = p12 + 4 * p34;
                        r[3][col][s] = n12 + 8 * n34 + m5[s];
                    }
                }
                T *dst[4];     /* straight into y where a whole row of tiles fits */
                for (int i = 0; i < 4; i++)
                    dst[i] = (4 * t + i < oh && 4 * tw == ow) ? plane + (4 * t + i) * ow
                                                               : out[i];
                for (int i = 0; i < 4; i++)                  /* then over the columns */
                    WG_IVDEP
                    for (int64_t s = 0; s < tw; s++) {
                        T p12 = r[i][1][s] + r[i][2][s], n12 = r[i][1][s] - r[i][2][s];
                        T p34 = r[i][3][s] + r[i][4][s], n34 = r[i][3][s] - r[i][4][s];
                        T *o = dst[i];
                        o[4 * s] = r[i][0][s] + p12 + p34 + add;
                        o[4 * s + 1] = n12 + 2 * n34 + add;
                        o[4 * s + 2] = p12 + 4 * p34 + add;
                        o[4 * s + 3] = n12 + 8 * n34 + r[i][5][s] + add;
                    }
                for (int i = 0; i < 4 && 4 * t + i < oh; i++)
                    if (dst[i] == out[i])
                        memcpy(plane + (4 * t + i) * ow, out[i], (size_t)ow * sizeof(T));
            }
        }
}

DPN_EXPORT void WG_SUF(dpn_wino_output)(const T *DPN_RESTRICT m, const T *DPN_RESTRICT bias, T
        *DPN_RESTRICT y, int64_t n, int64_t k, int64_t oh, int64_t ow, int64_t th, int64_t tw,
        int64_t kstride)
{
    WG_TW_SWITCH(tw, WG_SUF(wg_output)(m, bias, y, n, k, oh, ow, th, WG_TW, kstride));
}

/* dM (36, k, P) = A dY A^T of every 4x4 tile of dy (n, k, oh, ow) (zeros beyond its edges),
 * the adjoint of dpn_wino_output; db[k] += the sum of dy over its samples and pixels (the bias
 * gradient: column sums in T, vectorised, their total in double). */
static inline __attribute__((always_inline)) void WG_SUF(wg_output_adjoint)(const T *DPN_RESTRICT dy, T *DPN_RESTRICT dm,
                                                double *DPN_RESTRICT db, int64_t n, int64_t k,
                                                int64_t oh, int64_t ow, int64_t th, int64_t tw,
                                                int64_t kstride)
{
    const int64_t width = 4 * tw, P = n * th * tw;
    T zero[ow], g[6][width], acc[ow];  /* g's columns beyond the image stay zero */
    memset(zero, 0, sizeof(zero));
    memset(g, 0, sizeof(g));
    for (int64_t b = 0; b < n; b++)
        for (int64_t ko = 0; ko < k; ko++) {
            const T *plane = dy + (b * k + ko) * oh * ow;
            for (int64_t j = 0; j < ow; j++)
                acc[j] = 0;
            for (int64_t t = 0; t < th; t++) {
                const T *row[4];             /* rows beyond the image read as zeros */
                for (int i = 0; i < 4; i++)
                    row[i] = 4 * t + i < oh ? plane + (4 * t + i) * ow : zero;
                const T *r0 = row[0], *r1 = row[1], *r2 = row[2], *r3 = row[3];
                T *g0 = g[0], *g1 = g[1], *g2 = g[2], *g3 = g[3], *g4 = g[4], *g5 = g[5];
                WG_IVDEP
                for (int64_t j = 0; j < ow; j++) {          /* A over the rows */
                    T y0 = r0[j], y1 = r1[j], y2 = r2[j], y3 = r3[j];
                    acc[j] += (y0 + y1) + (y2 + y3);
                    T p02 = y0 + y2;
                    g0[j] = y0;
                    g1[j] = p02 + y1 + y3;
                    g2[j] = p02 - y1 - y3;
                    g3[j] = y0 + 2 * y1 + 4 * y2 + 8 * y3;
                    g4[j] = y0 - 2 * y1 + 4 * y2 - 8 * y3;
                    g5[j] = y3;
                }
                T *out = dm + ko * P + (b * th + t) * tw;
                for (int a = 0; a < 6; a++) {               /* then over the columns */
                    const T *ga = g[a];
                    T *o = out + (6 * a) * kstride;
                    WG_IVDEP
                    for (int64_t s = 0; s < tw; s++) {
                        T y0 = ga[4 * s], y1 = ga[4 * s + 1], y2 = ga[4 * s + 2],
                          y3 = ga[4 * s + 3];
                        o[s] = y0;
                        o[kstride + s] = y0 + y1 + y2 + y3;
                        o[2 * kstride + s] = y0 - y1 + y2 - y3;
                        o[3 * kstride + s] = y0 + 2 * y1 + 4 * y2 + 8 * y3;
                        o[4 * kstride + s] = y0 - 2 * y1 + 4 * y2 - 8 * y3;
                        o[5 * kstride + s] = y3;
                    }
                }
            }
            double sum = 0.0;
            for (int64_t j = 0; j < ow; j++)
                sum += acc[j];
            db[ko] += sum;
        }
}

DPN_EXPORT void WG_SUF(dpn_wino_output_adjoint)(const T *DPN_RESTRICT dy, T *DPN_RESTRICT dm,
        double *DPN_RESTRICT db, int64_t n, int64_t k, int64_t oh, int64_t ow, int64_t th,
        int64_t tw, int64_t kstride)
{
    WG_TW_SWITCH(tw, WG_SUF(wg_output_adjoint)(dy, dm, db, n, k, oh, ow, th, WG_TW, kstride));
}

/* B applied to the 6 transformed values v0..v5: the adjoint of the rows of B^T. */
#define WG_B_ADJOINT(v0, v1, v2, v3, v4, v5, d0, d1, d2, d3, d4, d5)                       \
    do {                                                                                    \
        d0 = 4 * (v0);                                                                      \
        d1 = 4 * ((v2) - (v1) + (v5)) + 2 * ((v4) - (v3));                                 \
        d2 = -5 * (v0) - 4 * ((v1) + (v2)) - (v3) - (v4);                                  \
        d3 = (v1) - (v2) + 2 * ((v3) - (v4)) - 5 * (v5);                                   \
        d4 = (v0) + (v1) + (v2) + (v3) + (v4);                                              \
        d5 = (v5);                                                                          \
    } while (0)

/* dx (n, c, h, w) = the adjoint of dpn_wino_input applied to dV (36, c, P): B dV B^T of every
 * tile added into its overlapping 6x6 window, cropped to the image. Written, not accumulated:
 * a window row is final once the next tile row has added its part, so two carry rows replace
 * a zeroed padded plane. */
static inline __attribute__((always_inline)) void WG_SUF(wg_input_adjoint)(const T *DPN_RESTRICT dv, T *DPN_RESTRICT dx,
                                               int64_t n, int64_t c, int64_t h, int64_t w,
                                               int64_t pad, int64_t th, int64_t tw,
                                               int64_t kstride)
{
    const int64_t width = 4 * tw + 2, P = n * th * tw;
    T rr[6][width], carry[2][width], tail[2][tw];
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            T *plane = dx + (b * c + ch) * h * w;
            memset(carry, 0, sizeof(carry));
            for (int64_t t = 0; t < th; t++) {
                const T *in = dv + ch * P + (b * th + t) * tw;
                for (int a = 0; a < 6; a++) {   /* B over the columns: 6 outputs per tile */
                    const T *v = in + (6 * a) * kstride;
                    T *ra = rr[a];
                    WG_IVDEP
                    for (int64_t s = 0; s < tw; s++) {   /* columns 4s .. 4s+3 of tile s */
                        T d0, d1, d2, d3, d4, d5;
                        WG_B_ADJOINT(v[s], v[kstride + s], v[2 * kstride + s],
                                     v[3 * kstride + s], v[4 * kstride + s],
                                     v[5 * kstride + s], d0, d1, d2, d3, d4, d5);
                        ra[4 * s] = d0;
                        ra[4 * s + 1] = d1;
                        ra[4 * s + 2] = d2;
                        ra[4 * s + 3] = d3;
                        tail[0][s] = d4;
                        tail[1][s] = d5;
                    }
                    ra[4 * tw] = ra[4 * tw + 1] = 0;
                    WG_IVDEP
                    for (int64_t s = 0; s < tw; s++) {   /* its columns 4s+4, 4s+5 overlap */
                        ra[4 * s + 4] += tail[0][s];
                        ra[4 * s + 5] += tail[1][s];
                    }
                }
                WG_IVDEP
                for (int64_t j = 0; j < width; j++) {       /* then over the rows */
                    T d0, d1, d2, d3, d4, d5;
                    WG_B_ADJOINT(rr[0][j], rr[1][j], rr[2][j], rr[3][j], rr[4][j], rr[5][j],
                                 d0, d1, d2, d3, d4, d5);
                    rr[0][j] = carry[0][j] + d0;
                    rr[1][j] = carry[1][j] + d1;
                    rr[2][j] = d2;
                    rr[3][j] = d3;
                    carry[0][j] = d4;
                    carry[1][j] = d5;
                }
                for (int i = 0; i < 4; i++) {
                    int64_t r = 4 * t + i - pad;
                    if (r >= 0 && r < h)
                        memcpy(plane + r * w, rr[i] + pad, (size_t)w * sizeof(T));
                }
            }
            for (int i = 0; i < 2; i++) {
                int64_t r = 4 * th + i - pad;
                if (r >= 0 && r < h)
                    memcpy(plane + r * w, carry[i] + pad, (size_t)w * sizeof(T));
            }
        }
}

DPN_EXPORT void WG_SUF(dpn_wino_input_adjoint)(const T *DPN_RESTRICT dv, T *DPN_RESTRICT dx,
        int64_t n, int64_t c, int64_t h, int64_t w, int64_t pad, int64_t th, int64_t tw, int64_t
        kstride)
{
    WG_TW_SWITCH(tw, WG_SUF(wg_input_adjoint)(dv, dx, n, c, h, w, pad, th, WG_TW, kstride));
}

/* G of F(4x4, 3x3) (Lavin & Gray 2016), for the filter transform and its adjoint. */
#ifndef WG_G_DEFINED
#define WG_G_DEFINED
static const double wg_G[6][3] = {{1 / 4., 0, 0}, {-1 / 6., -1 / 6., -1 / 6.},
                                  {-1 / 6., 1 / 6., -1 / 6.}, {1 / 24., 1 / 12., 1 / 6.},
                                  {1 / 24., -1 / 12., 1 / 6.}, {0, 0, 1}};
#define WG_BLOCK 16      /* filters per block: each of the 36 planes gets whole cache lines */
#endif

/* U (36, c, k) = G g G^T of every filter g = w[ko][ch] (3x3) of w (k, c, 3, 3), in double
 * (G holds sixths) and rounded once. A block of filters at a time, so that each of the 36
 * planes (c * k apart: often a power of two) is written a cache line at once. */
DPN_EXPORT void WG_SUF(dpn_wino_filter)(const T *DPN_RESTRICT w, T *DPN_RESTRICT u,
                                        int64_t k, int64_t c)
{
    const int64_t stride = c * k;
    double block[36][WG_BLOCK];
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t k0 = 0; k0 < k; k0 += WG_BLOCK) {
            const int64_t nb = k - k0 < WG_BLOCK ? k - k0 : WG_BLOCK;
            for (int64_t q = 0; q < nb; q++) {
                const T *g = w + ((k0 + q) * c + ch) * 9;
                double rows[6][3];                   /* G g, then G^T */
                for (int a = 0; a < 6; a++)
                    for (int j = 0; j < 3; j++)
                        rows[a][j] = wg_G[a][0] * g[j] + wg_G[a][1] * g[3 + j]
                                     + wg_G[a][2] * g[6 + j];
                for (int a = 0; a < 6; a++)
                    for (int b = 0; b < 6; b++)
                        block[6 * a + b][q] = rows[a][0] * wg_G[b][0] + rows[a][1] * wg_G[b][1]
                                              + rows[a][2] * wg_G[b][2];
            }
            for (int pos = 0; pos < 36; pos++) {
                T *out = u + pos * stride + ch * k + k0;
                for (int64_t q = 0; q < nb; q++)
                    out[q] = (T)block[pos][q];
            }
        }
}

/* dW (k, c, 3, 3) = G^T dU G of dU (36, c, k): the adjoint of dpn_wino_filter, in double,
 * reading a cache line of each plane at a time. */
DPN_EXPORT void WG_SUF(dpn_wino_filter_adjoint)(const T *DPN_RESTRICT du, T *DPN_RESTRICT dw,
                                                int64_t k, int64_t c)
{
    const int64_t stride = c * k;
    double block[36][WG_BLOCK];
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t k0 = 0; k0 < k; k0 += WG_BLOCK) {
            const int64_t nb = k - k0 < WG_BLOCK ? k - k0 : WG_BLOCK;
            for (int pos = 0; pos < 36; pos++) {
                const T *in = du + pos * stride + ch * k + k0;
                for (int64_t q = 0; q < WG_BLOCK; q++)
                    block[pos][q] = q < nb ? in[q] : 0.0;
            }
            double cols[6][3][WG_BLOCK], out[9][WG_BLOCK];   /* dU G, then G^T: */
            for (int a = 0; a < 6; a++)                        /* the block's filters */
                for (int j = 0; j < 3; j++)                    /* side by side */
                    for (int64_t q = 0; q < WG_BLOCK; q++) {
                        double sum = 0;
                        for (int b = 0; b < 6; b++)
                            sum += block[6 * a + b][q] * wg_G[b][j];
                        cols[a][j][q] = sum;
                    }
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    for (int64_t q = 0; q < WG_BLOCK; q++) {
                        double sum = 0;
                        for (int a = 0; a < 6; a++)
                            sum += wg_G[a][i] * cols[a][j][q];
                        out[3 * i + j][q] = sum;
                    }
            for (int64_t q = 0; q < nb; q++) {
                T *g = dw + ((k0 + q) * c + ch) * 9;
                for (int e = 0; e < 9; e++)
                    g[e] = (T)out[e][q];
            }
        }
}

#undef WG_B_ADJOINT
#undef T
