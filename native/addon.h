#ifndef SNAPDIR_ADDON_H
#define SNAPDIR_ADDON_H
#include <node_api.h>

/* Throws a JS Error carrying errno's name as `code` (like Node's fs errors) and returns NULL. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path);
/* Reads a Buffer or string argument as a NUL-terminated path; caller frees. NULL after throwing. */
char *arg_path(napi_env env, napi_value v);
void register_fsmeta(napi_env env, napi_value exports);
void register_object_write(napi_env env, napi_value exports);
void register_hash(napi_env env, napi_value exports);
void register_file_batch(napi_env env, napi_value exports);
#endif
