{
  "targets": [
    {
      "target_name": "snapdir",
      "sources": ["native/addon.c", "native/fastcdc.c", "native/fsmeta.c", "native/object-write.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "dependencies": ["node_modules/zstd-napi/deps/zstd.gyp:libzstd"]
    },
    {
      "target_name": "snapdir_fuse",
      "sources": ["native/fusemount.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
