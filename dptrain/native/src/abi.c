/* What the loader (dptrain/native/__init__.py) checks before it trusts a library: the ISA
 * level it was compiled for, so a library renamed by hand is not run on the wrong CPU. */
#include "dpn.h"

#ifndef DPN_ISA
#define DPN_ISA "generic"
#endif

DPN_EXPORT const char *dpn_isa(void) { return DPN_ISA; }
