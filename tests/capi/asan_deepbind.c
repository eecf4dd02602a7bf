/* Linked into the sanitized test client only. OpenVINO's TBB dlopen()s libtbbbind with
 * RTLD_DEEPBIND, which the sanitizer runtime refuses outright (google/sanitizers#611: a
 * deep-bound library would bypass the malloc interceptors). This dlopen, found before the
 * sanitizer's, drops that one flag and passes the call on; TBB then binds normally. */
#define _GNU_SOURCE
#include <dlfcn.h>

void *dlopen(const char *file, int mode) {
    static void *(*next)(const char *, int);
    if (!next) next = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    return next(file, mode & ~RTLD_DEEPBIND);
}
