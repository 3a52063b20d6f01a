package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNonFreeSources: .ci/nonfree.sh adds contrib and non-free to the
// machine's own APT sources, in both formats, and leaves alone what has
// non-free already, comments, and the mirrors (it names none).
func TestNonFreeSources(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	mirror := "http://mirror.example/debian"
	cases := []struct{ name, in, want string }{
		{"deb822", "Types: deb\nURIs: " + mirror + "\nSuites: bookworm\nComponents: main\n",
			"Types: deb\nURIs: " + mirror + "\nSuites: bookworm\nComponents: main contrib non-free\n"},
		{"deb822 firmware only", "Components: main non-free-firmware\n", "Components: main non-free-firmware contrib non-free\n"},
		{"deb822 has it", "Components: main contrib non-free\n", "Components: main contrib non-free\n"},
		{"one-line", "# deb " + mirror + " bookworm main\ndeb " + mirror + " bookworm main\ndeb-src " + mirror + " bookworm main \n",
			"# deb " + mirror + " bookworm main\ndeb " + mirror + " bookworm main contrib non-free\ndeb-src " + mirror + " bookworm main contrib non-free\n"},
		{"one-line has it", "deb " + mirror + " bookworm main non-free\n", "deb " + mirror + " bookworm main non-free\n"},
	}
	script, err := filepath.Abs(filepath.Join("..", "..", ".ci", "nonfree.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "x.list"
			if strings.HasPrefix(c.name, "deb822") {
				name = "x.sources"
			}
			f := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(f, []byte(c.in), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("sh", script, f, filepath.Join(t.TempDir(), "missing.list")).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			got, _ := os.ReadFile(f)
			if string(got) != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// TestNoRegistryHosts: no file in the repository names a package
// registry's or mirror's host (CI uses the machine's own sources and
// clients' defaults). The names are assembled here so that this file does
// not hold them either.
func TestNoRegistryHosts(t *testing.T) {
	hosts := []string{
		"deb" + ".debian.org", "security" + ".debian.org", "archive" + ".ubuntu.com",
		"registry" + ".npmjs.org", "registry" + ".yarnpkg.com", "proxy" + ".golang.org", "sum" + ".golang.org",
		"pypi" + ".org", "files" + ".pythonhosted.org", "download" + ".pytorch.org",
	}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "node_modules" || n == ".lens" {
				return filepath.SkipDir
			}
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > 8<<20 || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if strings.Contains(string(b), h) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s names the registry host %s", rel, h)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
