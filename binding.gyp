{
  "targets": [
    {
      "target_name": "snapdir",
      "sources": ["native/addon.c", "native/fastcdc.c", "native/fsmeta.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
