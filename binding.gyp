{
  "targets": [
    {
      "target_name": "snapdir",
      "sources": ["native/addon.c", "native/fastcdc.c", "native/fsmeta.c", "native/object-write.c", "native/hash.c", "native/file-batch.c", "native/prefetch.c", "native/go-flate.c", "native/go-flate-addon.c", "native/kflate.c", "native/pgzip.c", "native/kzstd.c", "native/object-read.c", "native/heap.c", "native/napi-util.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-ffp-contract=off"],
      "dependencies": ["node_modules/zstd-napi/deps/zstd.gyp:libzstd", "blake3"]
    },
    {
      "target_name": "blake3",
      "type": "static_library",
      "variables": {"c": "node_modules/@c4312/blake3-native/c"},
      "sources": ["<(c)/blake3.c", "<(c)/blake3_dispatch.c", "<(c)/blake3_portable.c"],
      "cflags": ["-O3", "-fvisibility=hidden"],
      "direct_dependent_settings": {"include_dirs": ["<(c)"]},
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["<(c)/blake3_sse2_x86-64_unix.S", "<(c)/blake3_sse41_x86-64_unix.S", "<(c)/blake3_avx2_x86-64_unix.S", "<(c)/blake3_avx512_x86-64_unix.S"]
        }, {
          "defines": ["BLAKE3_NO_SSE2", "BLAKE3_NO_SSE41", "BLAKE3_NO_AVX2", "BLAKE3_NO_AVX512"]
        }]
      ]
    },
    {
      "target_name": "snapdir_fuse",
      "sources": ["native/fusemount.c", "native/napi-util.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
