// A small image for the containerd tests, built with umoci: a static C program (`hello`) and a few
// files in two layers, the second changing one file and deleting another, plus any files a test adds
// to the second layer.
//
//   hello [FILE]             prints FILE (default /etc/msg)
//   hello FILE wait          prints it, then waits (a container that keeps running)
//   hello FILE size          reads FILE whole with read(2) and prints "N bytes", or the failing read's
//                            error and how long the reads took: "read: Input/output error after 2003 ms"
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { tool } from './oci.js'

const HELLO_C = `#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static int size(const char *name) {
  int fd = open(name, O_RDONLY);
  if (fd < 0) { perror("open"); return 1; }
  static char b[1 << 16];
  long total = 0;
  ssize_t n;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while ((n = read(fd, b, sizeof b)) > 0) total += n;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  if (n < 0) { printf("read: %s after %ld ms\\n", strerror(errno), ms); return 1; }
  printf("%ld bytes\\n", total);
  return 0;
}
int main(int argc, char **argv) {
  if (argc > 2 && strcmp(argv[2], "size") == 0) return size(argv[1]);
  FILE *f = fopen(argc > 1 ? argv[1] : "/etc/msg", "r");
  if (!f) { perror("open"); return 1; }
  char b[256]; size_t n = fread(b, 1, sizeof b - 1, f); b[n] = 0;
  printf("%s", b);
  fflush(stdout);
  if (argc > 2) pause(); /* "wait": a container that keeps running */
  return 0;
}
`

export interface HelloImageOptions {
  /** the text of /etc/msg in layer 1 (an image whose layers share nothing with another's) */
  first?: string
  /** more files for the second layer, by path in the image */
  files?: Record<string, Buffer | string>
}

/**
 * Builds the image as an OCI layout at DIR/layout (tag v1) and returns its path; beside it,
 * DIR/hello.tar is the same layout as an archive. Layer 1: /bin/hello, /etc/msg ("hello from layer
 * 1"), /etc/doomed; layer 2: /etc/msg ("layer 2 says hi"), /etc/doomed deleted, and `files`.
 */
export function buildHelloLayout(dir: string, options: HelloImageOptions = {}): string {
  writeFileSync(path.join(dir, 'hello.c'), HELLO_C)
  tool('gcc', ['-static', '-O2', '-o', path.join(dir, 'hello'), path.join(dir, 'hello.c')])
  const layout = path.join(dir, 'layout')
  const bundle = path.join(dir, 'bundle')
  const rootfs = path.join(bundle, 'rootfs')
  tool('umoci', ['init', '--layout', layout])
  tool('umoci', ['new', '--image', `${layout}:v1`])
  tool('umoci', ['unpack', '--image', `${layout}:v1`, bundle])
  mkdirSync(path.join(rootfs, 'bin'))
  mkdirSync(path.join(rootfs, 'etc'))
  tool('cp', [path.join(dir, 'hello'), path.join(rootfs, 'bin', 'hello')])
  writeFileSync(path.join(rootfs, 'etc', 'msg'), options.first ?? 'hello from layer 1\n')
  writeFileSync(path.join(rootfs, 'etc', 'doomed'), 'deleted in layer 2\n')
  tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:v1`, bundle])
  writeFileSync(path.join(rootfs, 'etc', 'msg'), 'layer 2 says hi\n')
  rmSync(path.join(rootfs, 'etc', 'doomed'))
  for (const [name, data] of Object.entries(options.files ?? {})) {
    mkdirSync(path.dirname(path.join(rootfs, name)), { recursive: true })
    writeFileSync(path.join(rootfs, name), data)
  }
  tool('umoci', ['repack', '--image', `${layout}:v1`, bundle])
  tool('umoci', ['config', '--image', `${layout}:v1`, '--config.cmd', '/bin/hello'])
  tool('tar', ['-C', layout, '-cf', path.join(dir, 'hello.tar'), '.'])
  return layout
}
