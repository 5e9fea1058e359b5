// pgzip-ref writes stdin to stdout as gzip through klauspost pgzip (the reference the pgzip tests compare
// our encoder with, byte for byte). Built at test time from Debian's packages:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o DIR/pgzip-ref ./test/tools/pgzip-ref
//
// Usage: pgzip-ref LEVEL BLOCKSIZE [SPLIT]  (SPLIT: write stdin in pieces of that many bytes)
package main

import (
	"io"
	"os"
	"strconv"

	"github.com/klauspost/pgzip"
)

func main() {
	if len(os.Args) < 3 {
		os.Stderr.WriteString("usage: pgzip-ref LEVEL BLOCKSIZE [SPLIT]\n")
		os.Exit(2)
	}
	level, err1 := strconv.Atoi(os.Args[1])
	block, err2 := strconv.Atoi(os.Args[2])
	split := 1 << 20
	var err3 error
	if len(os.Args) > 3 {
		split, err3 = strconv.Atoi(os.Args[3])
	}
	if err1 != nil || err2 != nil || err3 != nil || split <= 0 {
		os.Stderr.WriteString("pgzip-ref: bad number\n")
		os.Exit(2)
	}
	in, err := io.ReadAll(os.Stdin)
	check(err)
	w, err := pgzip.NewWriterLevel(os.Stdout, level)
	check(err)
	check(w.SetConcurrency(block, 4))
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
		os.Stderr.WriteString("pgzip-ref: " + err.Error() + "\n")
		os.Exit(1)
	}
}
