package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// storeFiles maps every file of the store to its mode, size, modification
// time and content hash.
func storeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		out[p] = desc
		return nil
	}))
	return out
}

// A script that only reads the store opens it read-only: the store's
// directory is left exactly as it was. A script that reads and then
// trains becomes a writer at its first write.
func TestReadingScriptLeavesStoreAlone(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"train.star": tinyScript + "train(name = 'first')\n",
		"read.star": "rs = lens.runs()\nr = lens.run('first')\n" +
			"print('READ', len(rs), r.status, r.steps, len(r.metrics('loss')), r.final_loss > 0)\n",
		"both.star": "print('BEFORE', len(lens.runs()))\n" + tinyScript +
			"r = train(name = 'second')\nprint('AFTER', len(lens.runs()), r.status, r.steps)\n",
	})
	_, stderr, code := lens(t, dir, "run", "train.star")
	require.Equal(t, 0, code, stderr)
	store := filepath.Join(dir, ".lens")
	before := storeFiles(t, store)
	for range 2 {
		out, stderr, code := lens(t, dir, "run", "read.star")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, out, "READ 1 done 6 6 True")
		out, stderr, code = lens(t, dir, "runs", "--json")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, out, `"name":"first"`)
		require.Equal(t, before, storeFiles(t, store), "reading changed the store's files")
	}
	out, stderr, code := lens(t, dir, "run", "both.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "BEFORE 1")
	require.Contains(t, out, "AFTER 2 done 6")
	out, stderr, code = lens(t, dir, "fsck")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "no problems")
}
