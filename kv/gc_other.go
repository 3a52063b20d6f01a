//go:build !unix

package kv

import "io/fs"

// fileDiskBytes is fi's apparent size where allocated blocks are not
// reported.
func fileDiskBytes(fi fs.FileInfo) int64 { return fi.Size() }
