{
  "targets": [
    {
      "target_name": "ovlfs_sys",
      "sources": ["src/native/ovlfs_sys.c"],
      "cflags": ["-O2", "-Wall"],
      "cflags!": ["-O3"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
