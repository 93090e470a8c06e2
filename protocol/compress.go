package protocol

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// MaxBodySize caps the size of a decompressed body, so a small compressed
// message (a "zip bomb") cannot exhaust memory.
const MaxBodySize = 64 << 20

// decompress undoes kombu's body compression (the "compression" header).
// kombu registers names by content type plus short aliases.
func decompress(body []byte, method string) ([]byte, error) {
	var r io.Reader
	switch method {
	case "application/x-gzip", "gzip", "zlib":
		// kombu's "gzip" is really zlib.compress; accept a genuine gzip
		// stream too since the magic bytes tell them apart.
		if len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
			r = zr
		} else {
			zr, err := zlib.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("zlib: %w", err)
			}
			defer zr.Close()
			r = zr
		}
	case "application/x-bz2", "bzip2", "bzip", "bz2":
		r = bzip2.NewReader(bytes.NewReader(body))
	case "application/zstd", "zstd", "zstandard":
		zr, err := zstd.NewReader(bytes.NewReader(body),
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(MaxBodySize),
			zstd.WithDecoderMaxWindow(MaxBodySize))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	case "application/x-lzma", "lzma", "xz":
		// kombu's lzma codec is Python's lzma.compress, whose default container is xz.
		xr, err := xz.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("lzma: %w", err)
		}
		r = xr
	case "application/x-brotli", "brotli":
		r = brotli.NewReader(bytes.NewReader(body))
	default:
		return nil, fmt.Errorf("unknown compression %q", method)
	}
	out, err := io.ReadAll(io.LimitReader(r, MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	if len(out) > MaxBodySize {
		return nil, fmt.Errorf("%s: decompressed body larger than %d bytes", method, MaxBodySize)
	}
	return out, nil
}
