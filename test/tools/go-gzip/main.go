// Go's compress/gzip as dockerd, BuildKit and containerd write layers: io.Copy of the tar (32 KiB
// writes) at the level given. Built at test time from Debian's golang-go (test/helpers/go-program.ts).
package main

import (
	"compress/gzip"
	"io"
	"os"
	"strconv"
)

func main() {
	level, _ := strconv.Atoi(os.Args[1])
	in, err := os.Open(os.Args[2])
	if err != nil {
		panic(err)
	}
	w, err := gzip.NewWriterLevel(os.Stdout, level)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(w, in); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
