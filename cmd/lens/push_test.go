package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"lens/engine/hf"
	"lens/engine/hf/hubtest"
	"lens/kv"
)

const hfToken = "hf_pushTestToken_0123456789abcdefXYZ"

// lensEnv runs the binary in dir with extra environment variables (which
// win over the test process's own).
func lensEnv(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(lensBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "LENS_STORE="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// storeHolds reports whether any key or value of the store at dir, in
// any version Badger still keeps, contains needle.
func storeHolds(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithReadOnly(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	found, n := false, 0
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if bytes.Contains(item.Key(), needle) || bytes.Contains(v, needle) {
				found = true
			}
		}
		return nil
	}))
	require.Greater(t, n, 10, "the scan saw the store's records")
	return found
}

func TestPushCommand(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a.star":     tinyScript + "train(name = 'pushme')\n",
	})
	_, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	hub := hubtest.New(t, hfToken)
	env := []string{"HF_TOKEN=" + hfToken, "HF_ENDPOINT=" + hub.URL}

	cases := []struct {
		name     string
		env      []string
		args     []string
		fail     func()
		code     int
		stderr   string
		requests bool // whether the hub may see requests
	}{
		{"no token", []string{"HF_TOKEN=", "HF_ENDPOINT=" + hub.URL}, []string{"pushme", "--repo", "alice/p"}, nil, 1, "set HF_TOKEN", false},
		{"no repo", env, []string{"pushme"}, nil, 2, "--repo OWNER/NAME", false},
		{"bad repo", env, []string{"pushme", "--repo", "alice"}, nil, 2, "want OWNER/NAME", false},
		{"unknown run", env, []string{"nosuchrun", "--repo", "alice/p"}, nil, 1, "nosuchrun", false},
		{"forbidden", env, []string{"pushme", "--repo", "alice/p", "--private"}, func() {
			hub.Fail(hubtest.RouteCommit, 403, `{"error":"You have read access only; token `+hfToken+` cannot write"}`)
		}, 1, "HTTP 403: You have read access only", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(hub.Requests())
			if tc.fail != nil {
				tc.fail()
			}
			out, stderr, code := lensEnv(t, dir, tc.env, append([]string{"push"}, tc.args...)...)
			require.Equal(t, tc.code, code, "stdout %s\nstderr %s", out, stderr)
			require.Contains(t, stderr, tc.stderr)
			require.NotContains(t, out+stderr, hfToken)
			if !tc.requests {
				require.Len(t, hub.Requests(), before, "nothing is sent")
			}
		})
	}

	out, stderr, code := lensEnv(t, dir, env, "push", "pushme", "--repo", "alice/p", "--all-checkpoints", "--private")
	require.Equal(t, 0, code, stderr)
	require.NotContains(t, out+stderr, hfToken)
	require.Contains(t, out, "step 3: "+hub.URL+"/alice/p/commit/")
	require.Contains(t, out, "step 6: "+hub.URL+"/alice/p/commit/")
	require.Contains(t, out, "pushed run")
	require.Empty(t, hub.Problems())
	repo, ok := hub.Repo("alice/p")
	require.True(t, ok)
	require.True(t, repo.Private)
	require.Len(t, repo.Commits, 2, "the forbidden attempt made no commit")
	for i, step := range []string{"3", "6"} {
		exp := filepath.Join(t.TempDir(), "exp")
		_, stderr, code := lens(t, dir, "export", "pushme", "--out", exp, "--step", step)
		require.Equal(t, 0, code, stderr)
		for _, f := range []string{hf.AdapterConfigFile, hf.AdapterWeightsFile} {
			want, err := os.ReadFile(filepath.Join(exp, f))
			require.NoError(t, err)
			require.Equal(t, want, repo.Commits[i].Files[f], "step %s %s", step, f)
		}
	}
	require.Contains(t, string(repo.Files["README.md"]), "library_name: peft")

	out, _, code = lens(t, dir, "show", "pushme")
	require.Equal(t, 0, code)
	require.Contains(t, out, hf.EventKind)
	require.Contains(t, out, "alice/p")
	require.True(t, storeHolds(t, filepath.Join(dir, ".lens"), []byte("alice/p")), "the scan finds what is there (the push event)")
	require.False(t, storeHolds(t, filepath.Join(dir, ".lens"), []byte(hfToken)), "the token is nowhere in the store")
}

// TestPushFromScript: hf.push skips (and says why) without a token or when
// the Hub refuses, fails with strict=True, and pushes with one.
func TestPushFromScript(t *testing.T) {
	hub := hubtest.New(t, hfToken)
	script := tinyScript + `
r = train(name = "scripted")
p = hf.push(r, repo = lens.args["repo"], strict = lens.args.get("strict") == "1", all_checkpoints = True)
print("PUSH", p)
if p:
    print("COMMITS", [c.step for c in p.commits], p.url)
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	cases := []struct {
		name   string
		env    []string
		args   []string
		fail   func()
		code   int
		want   []string
		pushed bool
	}{
		{"no token", []string{"HF_TOKEN=", "HF_ENDPOINT=" + hub.URL}, []string{"repo=alice/s"}, nil, 0,
			[]string{"hf.push: skipped", "HF_TOKEN", "lens push", "PUSH None"}, false},
		{"no token strict", []string{"HF_TOKEN=", "HF_ENDPOINT=" + hub.URL}, []string{"repo=alice/s", "strict=1"}, nil, 1,
			[]string{"HF_TOKEN"}, false},
		{"refused", []string{"HF_TOKEN=" + hfToken, "HF_ENDPOINT=" + hub.URL}, []string{"repo=alice/s"},
			func() { hub.Fail(hubtest.RouteCreate, 401, `{"error":"Invalid token `+hfToken+`"}`) }, 0,
			[]string{"hf.push: skipped", "HTTP 401", "PUSH None"}, false},
		{"bad repo fails anyway", []string{"HF_TOKEN=" + hfToken, "HF_ENDPOINT=" + hub.URL}, []string{"repo=nope"}, nil, 1,
			[]string{"OWNER/NAME"}, false},
		{"pushed", []string{"HF_TOKEN=" + hfToken, "HF_ENDPOINT=" + hub.URL}, []string{"repo=alice/s"}, nil, 0,
			[]string{"hf.push: pushed run", "COMMITS [3, 6] " + hub.URL + "/alice/s"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fail != nil {
				tc.fail()
			}
			out, stderr, code := lensEnv(t, dir, tc.env, append([]string{"run", "a.star", "--"}, tc.args...)...)
			require.Equal(t, tc.code, code, "stdout %s\nstderr %s", out, stderr)
			for _, w := range tc.want {
				require.Contains(t, out+stderr, w)
			}
			require.NotContains(t, out+stderr, hfToken)
			_, ok := hub.Repo("alice/s")
			require.Equal(t, tc.pushed, ok)
		})
	}
	repo, _ := hub.Repo("alice/s")
	require.True(t, repo.Private, "hf.push creates private repos by default")
	require.Len(t, repo.Commits, 2)
	require.Empty(t, hub.Problems())

	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	list, err := st.RunsByName("scripted")
	require.NoError(t, err)
	require.Len(t, list, 5, "every run stays in the store, pushed or not")
	require.NoError(t, st.Close())
	require.False(t, storeHolds(t, filepath.Join(dir, ".lens"), []byte(hfToken)))
}
