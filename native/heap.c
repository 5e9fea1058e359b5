/* keepFreedHeap(bytes) -> boolean: glibc's malloc keeps up to `bytes` of freed memory at the top of
 * its heap instead of handing it back to the kernel (mallopt M_TRIM_THRESHOLD; the default is 128 KiB).
 * A stream of network reads allocates a fresh 64 KiB buffer per read, and the garbage collector frees
 * tens of MB of them at once: with the default, each such batch is returned and the next one faults
 * its pages in again, which cost a registry to registry copy of 81 MB about 0.2 s of system time (on
 * a virtual machine, where a page fault is dear). False where the C library is not glibc. */
#include <stdlib.h> /* defines __GLIBC__ where the C library is glibc */

#include "addon.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value keep_freed_heap(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "keepFreedHeap(bytes: number)");
  double bytes;
  if (!get_double(env, argv[0], "keepFreedHeap: bytes", &bytes)) return NULL;
  if (!(bytes >= 0 && bytes <= 1073741824.0)) {
    napi_throw_range_error(env, NULL, "keepFreedHeap: bytes must be between 0 and 1 GiB");
    return NULL;
  }
  bool done = false;
#ifdef __GLIBC__
  done = mallopt(M_TRIM_THRESHOLD, (int)bytes) == 1;
#endif
  napi_value r;
  NAPI_CALL(napi_get_boolean(env, done, &r));
  return r;
}

void register_heap(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("keepFreedHeap", keep_freed_heap));
}
