// zstd-ref writes stdin to stdout as zstd through klauspost/compress's encoder with the options
// containers/image uses (the reference the zstd tests compare our encoder with, byte for byte). Built
// at test time from Debian's packages:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o DIR/zstd-ref ./test/tools/zstd-ref
//
// Usage: zstd-ref [SPLIT [CONCURRENCY [LEVEL]]]  (SPLIT: write stdin in pieces of that many bytes;
// CONCURRENCY: WithEncoderConcurrency, the default GOMAXPROCS when 0; LEVEL: WithEncoderLevel, none when 0)
package main

import (
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/zstd"
)

func main() {
	split := 32 << 10
	concurrency := 0
	level := 0
	var err1, err2, err3 error
	if len(os.Args) > 1 {
		split, err1 = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		concurrency, err2 = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		level, err3 = strconv.Atoi(os.Args[3])
	}
	if err1 != nil || err2 != nil || err3 != nil || split <= 0 || concurrency < 0 || level < 0 {
		os.Stderr.WriteString("usage: zstd-ref [SPLIT [CONCURRENCY [LEVEL]]]\n")
		os.Exit(2)
	}
	in, err := io.ReadAll(os.Stdin)
	check(err)
	// containers/image: zstd.NewWriter(dest) with no options (pkg/compression/zstd.go)
	var opts []zstd.EOption
	if concurrency > 0 {
		opts = append(opts, zstd.WithEncoderConcurrency(concurrency))
	}
	if level > 0 {
		opts = append(opts, zstd.WithEncoderLevel(zstd.EncoderLevel(level)))
	}
	w, err := zstd.NewWriter(os.Stdout, opts...)
	check(err)
	for len(in) > 0 {
		n := split
		if n > len(in) {
			n = len(in)
		}
		_, err = w.Write(in[:n])
		check(err)
		in = in[n:]
	}
	check(w.Close())
}

func check(err error) {
	if err != nil {
		os.Stderr.WriteString("zstd-ref: " + err.Error() + "\n")
		os.Exit(1)
	}
}
