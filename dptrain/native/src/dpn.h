/* Shared by every source of the compiled CPU kernels (dptrain/native/src/).
 *
 * Each kernel file defines its functions once per floating type through DPN_REAL and a
 * suffix: float32 runs use the _f32 functions; the _f64 ones exist so that tests check the
 * same code's gradients against finite differences in float64. */
#ifndef DPN_H
#define DPN_H

#include <stddef.h>
#include <stdint.h>

#define DPN_EXPORT __attribute__((visibility("default")))
#define DPN_RESTRICT __restrict__

#endif
