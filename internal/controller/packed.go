package controller

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"
	"sync"
)

// The cache keeps a VirtualService's compact routes and a DestinationRule's
// spec protobuf-encoded and then deflated (RFC 1951): branch rules and
// subsets repeat the same hosts, header names and labels, so an encoded
// 100-branch VirtualService's 10 KB deflate to about 1.2 KB and its
// DestinationRule's 3.8 KB to 0.5 KB (at 1,000 branches 101 KB to 10 KB, 37 KB
// to 5 KB). Deflating at flate.BestSpeed costs about a millisecond per 100 KB
// (once per event or write of the object); inflating less, once per rebuild
// (appScope.currentVS/currentDR).

// flateWriters and flateReaders reuse the compressor's and decompressor's
// state (hundreds of kilobytes each), which would otherwise be garbage at
// every event.
var (
	flateWriters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // a valid level: never fails
		return w
	}}
	flateReaders = sync.Pool{New: func() any { return flate.NewReader(strings.NewReader("")) }}
)

// pack is b deflated, as a string for an annotation of the cached object.
func pack(b []byte) string {
	var out bytes.Buffer
	out.Grow(len(b)/4 + 64)
	w := flateWriters.Get().(*flate.Writer)
	defer func() {
		w.Reset(io.Discard) // hold no buffer while pooled
		flateWriters.Put(w)
	}()
	w.Reset(&out)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(b)
	_ = w.Close()
	return out.String()
}

// unpack inflates what pack made. Errors: s is not deflated data.
func unpack(s string) ([]byte, error) {
	r := flateReaders.Get().(io.ReadCloser)
	defer func() {
		_ = r.(flate.Resetter).Reset(strings.NewReader(""), nil) // hold no input while pooled
		flateReaders.Put(r)
	}()
	if err := r.(flate.Resetter).Reset(strings.NewReader(s), nil); err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}
