package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium returns the path of a Chromium binary. Without one the test is
// skipped, unless the environment variable CI is set, where that is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const hint = "chromium not found in PATH (on Debian: apt-get install -y --no-install-recommends chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(hint + "; CI is set, so the browser check is required")
	}
	t.Skip(hint + "; skipping the browser check (set CI=1 to make this a failure)")
	return ""
}

// headless runs Chromium in headless mode with a throwaway profile, no
// network chatter and no sandbox (tests often run as root), and returns stdout.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.WaitDelay = 10 * time.Second // helper processes may hold the pipes open
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "chromium %s failed; stderr:\n%s", strings.Join(args, " "), stderr.String())
	return stdout.Bytes()
}

var (
	tagRE  = regexp.MustCompile(`<(svg|path|rect|circle|table)\b[^>]*>`)
	attrRE = regexp.MustCompile(`([\w:-]+)="([^"]*)"`)
)

// domElement is an element start tag found in serialized DOM, with the
// data-title of the chart it is in.
type domElement struct {
	name, chart string
	attr        map[string]string
}

// scanDOM lists the svg, path, rect, circle and table start tags of a
// serialized DOM in order, each tagged with its enclosing chart's title.
func scanDOM(dom string) []domElement {
	var out []domElement
	chart := ""
	for _, m := range tagRE.FindAllStringSubmatchIndex(dom, -1) {
		tag, name := dom[m[0]:m[1]], dom[m[2]:m[3]]
		e := domElement{name: name, attr: map[string]string{}}
		for _, a := range attrRE.FindAllStringSubmatch(tag, -1) {
			e.attr[a[1]] = a[2]
		}
		if name == "svg" {
			chart = e.attr["data-title"]
		}
		e.chart = chart
		out = append(out, e)
	}
	return out
}

func hasClass(e domElement, class string) bool {
	return strings.Contains(" "+e.attr["class"]+" ", " "+class+" ")
}

// TestBrowser loads the sample report (one chart of every kind and a table)
// in headless Chromium, checks the DOM the browser built, and takes a
// screenshot. With -update the screenshot is saved as testdata/example.png.
func TestBrowser(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	doc := sampleDocument()
	require.NoError(t, doc.WriteFile(page))
	url := "file://" + filepath.ToSlash(page)

	t.Run("dump-dom", func(t *testing.T) {
		dom := string(headless(t, bin, "--dump-dom", url))
		require.Contains(t, dom, "</html>", "no DOM came back")

		type want struct {
			kind   string
			series []string // lines with data
			marks  int      // bars, cells or points
		}
		wants := map[string]want{}
		var order []string
		for _, s := range doc.Sections {
			for _, it := range s.Items {
				switch c := it.(type) {
				case *LineChart:
					w := want{kind: "line"}
					for _, se := range c.Series {
						if len(se.runs(c.LogY)) > 0 {
							w.series = append(w.series, se.Name)
						}
					}
					wants[c.Title], order = w, append(order, c.Title)
				case *BarChart:
					wants[c.Title], order = want{kind: "bar", marks: len(c.Values)}, append(order, c.Title)
				case *Heatmap:
					n := 0
					for _, r := range c.Values {
						n += len(r)
					}
					wants[c.Title], order = want{kind: "heatmap", marks: n}, append(order, c.Title)
				case *Scatter:
					wants[c.Title], order = want{kind: "scatter", marks: len(c.Points)}, append(order, c.Title)
				}
			}
		}
		require.Len(t, order, 5)

		elems := scanDOM(dom)
		var charts []string
		series := map[string][]string{}
		marks := map[string]int{}
		tables := 0
		for _, e := range elems {
			switch {
			case e.name == "svg" && hasClass(e, "chart"):
				charts = append(charts, e.attr["data-title"])
				assert.Equal(t, wants[e.attr["data-title"]].kind, e.attr["data-kind"])
			case e.name == "path" && hasClass(e, "series"):
				assert.NotEmpty(t, strings.TrimSpace(e.attr["d"]), "empty path for %q in %q", e.attr["data-series"], e.chart)
				series[e.chart] = append(series[e.chart], e.attr["data-series"])
			case hasClass(e, "bar"), hasClass(e, "cell"), hasClass(e, "point"):
				marks[e.chart]++
			case e.name == "table" && hasClass(e, "table"):
				tables++
			}
		}
		assert.Equal(t, order, charts, "every chart is in the rendered DOM, in order")
		for title, w := range wants {
			if w.kind == "line" {
				assert.Equal(t, w.series, series[title], "series paths of %q", title)
				continue
			}
			assert.Equal(t, w.marks, marks[title], "marks of %q", title)
		}
		assert.Equal(t, 1, tables)
		assert.NotContains(t, dom, "parsererror")
	})

	t.Run("screenshot", func(t *testing.T) {
		shot := filepath.Join(dir, "shot.png")
		headless(t, bin, "--screenshot="+shot, "--window-size=1200,2400", "--hide-scrollbars", url)
		data, err := os.ReadFile(shot)
		require.NoError(t, err, "no screenshot written")
		img, err := png.Decode(bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, image.Rect(0, 0, 1200, 2400), img.Bounds())

		colours := map[uint32]int{}
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				colours[(r>>8)<<16|(g>>8)<<8|bl>>8]++
			}
		}
		require.Greater(t, len(colours), 1, "screenshot is a single colour")
		assert.Greater(t, len(colours), 50, "too few colours for charts with text")
		// The first two series colours, the bars and the top of the
		// heatmap scale must all be on screen.
		for _, c := range []string{palette[0], palette[1], palette[2], "#fde725"} {
			assert.Greater(t, near(colours, c), 50, "colour %s barely drawn", c)
		}

		if *update {
			require.NoError(t, os.WriteFile(filepath.Join("testdata", "example.png"), compactPNG(t, img, data), 0o644))
		}
	})
}

// near counts pixels within a small distance of the colour "#rrggbb".
func near(colours map[uint32]int, hex string) int {
	var want [3]int
	for i := range want {
		var v int
		for _, ch := range hex[1+2*i : 3+2*i] {
			v = v*16 + strings.IndexRune("0123456789abcdef", ch)
		}
		want[i] = v
	}
	n := 0
	for c, count := range colours {
		d := abs(int(c>>16)-want[0]) + abs(int(c>>8&0xff)-want[1]) + abs(int(c&0xff)-want[2])
		if d <= 24 {
			n += count
		}
	}
	return n
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// compactPNG re-encodes img with the best compression when that is smaller
// than Chromium's own encoding.
func compactPNG(t *testing.T, img image.Image, orig []byte) []byte {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	require.NoError(t, enc.Encode(&buf, img))
	if buf.Len() < len(orig) {
		return buf.Bytes()
	}
	return orig
}
