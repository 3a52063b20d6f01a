//go:build !linux

package kv

// pageOutSealed is a no-op off Linux: MADV_PAGEOUT is Linux's.
func pageOutSealed(dir string) bool { return false }
