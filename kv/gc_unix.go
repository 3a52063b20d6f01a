//go:build unix

package kv

import (
	"io/fs"
	"syscall"
)

// fileDiskBytes is the space fi's blocks take (st_blocks is in 512-byte
// units whatever the file system's block size).
func fileDiskBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
