package report

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var nan, inf = math.NaN(), math.Inf(1)

// subpaths counts the "M" commands in a path's d attribute: one per unbroken stretch.
func subpaths(d string) int { return strings.Count(d, "M") }

func seriesPaths(t *testing.T, svg string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range parseXML(t, svg).find(byClass("path", "series")) {
		out[p.attr["data-series"]] = p.attr["d"]
	}
	return out
}

func TestLineNaNGaps(t *testing.T) {
	tests := []struct {
		name     string
		x, y     []float64
		logY     bool
		subpaths int // 0: no path at all
		lone     int // stretches of a single point, drawn as "h0" dots
	}{
		{"clean", nil, []float64{1, 2, 3, 4}, false, 1, 0},
		{"NaN in the middle", nil, []float64{1, 2, nan, 4, 5}, false, 2, 0},
		{"Inf in the middle", nil, []float64{1, 2, inf, 4, 5}, false, 2, 0},
		{"-Inf in the middle", nil, []float64{1, 2, -inf, 4, 5}, false, 2, 0},
		{"NaN in x", []float64{0, 1, nan, 3, 4}, []float64{1, 2, 3, 4, 5}, false, 2, 0},
		{"leading and trailing NaN", nil, []float64{nan, 1, 2, nan}, false, 1, 0},
		{"runs of NaN", nil, []float64{1, 2, nan, nan, nan, 3, 4, nan, 5, 6}, false, 3, 0},
		{"isolated point", nil, []float64{1, 2, nan, 3, nan, 4, 5}, false, 3, 1},
		{"single point", nil, []float64{7}, false, 1, 1},
		{"all NaN", nil, []float64{nan, nan}, false, 0, 0},
		{"empty", nil, nil, false, 0, 0},
		{"log axis drops non-positive", nil, []float64{1, 10, 0, 100, -5, 1000}, true, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &LineChart{Title: "gaps", LogY: tt.logY, Series: []Series{{Name: "s", X: tt.x, Y: tt.y}}}
			svg := c.SVG()
			paths := seriesPaths(t, svg)
			if tt.subpaths == 0 {
				assert.Empty(t, paths)
				assert.Contains(t, svg, ">no data</text>")
				return
			}
			require.Contains(t, paths, "s")
			d := paths["s"]
			assert.Equal(t, tt.subpaths, subpaths(d), d)
			assert.Equal(t, tt.lone, strings.Count(d, "h0"), d)
			assert.NotContains(t, d, "NaN")
			assert.NotContains(t, d, "Inf")
			assert.NotContains(t, svg, "no data")
		})
	}
}

func TestLineEmptySeriesAmongOthers(t *testing.T) {
	c := &LineChart{Title: "mixed", Series: []Series{
		{Name: "good", Y: []float64{3, 2, 1}},
		{Name: "empty"},
		{Name: "nan", Y: []float64{nan}},
	}}
	svg := c.SVG()
	paths := seriesPaths(t, svg)
	assert.Equal(t, []string{"good"}, keys(paths))
	root := parseXML(t, svg)
	legend := mapText(root.find(byClass("g", "legend")))
	require.Len(t, legend, 1)
	assert.Contains(t, legend[0], "empty (no data)")
	assert.Contains(t, legend[0], "nan (no data)")
	assert.NotContains(t, svg, ">no data</text>", "the chart itself has data")
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// tickLabels returns the texts of a chart's y or x tick labels.
func tickLabels(t *testing.T, svg, class string) []string {
	t.Helper()
	groups := parseXML(t, svg).find(byClass("g", class))
	require.Len(t, groups, 1)
	return mapText(groups[0].kids)
}

func TestLogAxisChart(t *testing.T) {
	tests := []struct {
		name string
		y    []float64
		want []string
	}{
		{"six decades", []float64{1, 30, 1e6}, []string{"1", "10", "100", "1000", "1e4", "1e5", "1e6"}},
		{"one decade", []float64{2, 3, 8}, []string{"1", "2", "5", "10"}},
		{"small", []float64{1e-5, 1e-3}, []string{"1e-5", "2e-5", "5e-5", "1e-4", "2e-4", "5e-4", "0.001"}},
		{"zero ignored", []float64{0, 0.5, 5}, []string{"0.1", "0.2", "0.5", "1", "2", "5", "10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &LineChart{Title: "log", XLabel: "step", YLabel: "v", LogY: true, Series: []Series{{Name: "s", Y: tt.y}}}
			svg := c.SVG()
			assert.Equal(t, tt.want, tickLabels(t, svg, "y-ticks"))
			// Ticks are evenly spaced per decade: y(10^k) - y(10^(k+1)) is constant.
			root := parseXML(t, svg)
			var ys []float64
			for _, n := range root.find(byClass("g", "y-ticks"))[0].kids {
				y, err := strconv.ParseFloat(n.attr["y"], 64)
				require.NoError(t, err)
				ys = append(ys, y)
			}
			for i := 1; i < len(ys); i++ {
				assert.Less(t, ys[i], ys[i-1], "higher values are drawn higher")
			}
		})
	}
	c := &LineChart{LogY: true, Series: []Series{{Name: "s", Y: []float64{1, 10, 100, 1000, 1e4}}}}
	root := parseXML(t, c.SVG())
	var ys []float64
	for _, n := range root.find(byClass("g", "y-ticks"))[0].kids {
		y, _ := strconv.ParseFloat(n.attr["y"], 64)
		ys = append(ys, y)
	}
	require.Len(t, ys, 5)
	for i := 2; i < len(ys); i++ {
		assert.InDelta(t, ys[0]-ys[1], ys[i-1]-ys[i], 0.11, "decades are evenly spaced")
	}
}

func TestLineChartAxes(t *testing.T) {
	tests := []struct {
		name   string
		y      []float64
		yTicks []string
	}{
		{"tiny range", []float64{0.001, 0.0012, 0.0013}, []string{"0.00100", "0.00105", "0.00110", "0.00115", "0.00120", "0.00125", "0.00130"}},
		{"huge range", []float64{1, 1e6}, []string{"0", "2.0e5", "4.0e5", "6.0e5", "8.0e5", "1.0e6"}},
		{"negative", []float64{-3, 5}, []string{"-4", "-2", "0", "2", "4", "6"}},
		{"constant", []float64{2.5, 2.5, 2.5}, []string{"2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &LineChart{Title: "axes", XLabel: "x", YLabel: "y", Series: []Series{{Name: "s", Y: tt.y}}}
			svg := c.SVG()
			assert.Equal(t, tt.yTicks, tickLabels(t, svg, "y-ticks"))
			paths := seriesPaths(t, svg)
			assert.Equal(t, 1, subpaths(paths["s"]))
		})
	}
}

func TestBaseline(t *testing.T) {
	tests := []struct {
		name     string
		baseline *float64
		logY     bool
		want     bool
	}{
		{"none", nil, false, false},
		{"inside", ptr(2), false, true},
		{"outside widens the axis", ptr(100), false, true},
		{"NaN", ptr(nan), false, false},
		{"zero on log axis", ptr(0), true, false},
		{"positive on log axis", ptr(50), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &LineChart{Baseline: tt.baseline, LogY: tt.logY, Series: []Series{{Name: "s", Y: []float64{1, 2, 3}}}}
			root := parseXML(t, c.SVG())
			lines := root.find(byClass("line", "baseline"))
			if !tt.want {
				assert.Empty(t, lines)
				return
			}
			require.Len(t, lines, 1)
			assert.Equal(t, "6 4", lines[0].attr["stroke-dasharray"])
			// The dashed line lies inside the plot: between the top and bottom y ticks.
			y, _ := strconv.ParseFloat(lines[0].attr["y1"], 64)
			ticks := root.find(byClass("g", "y-ticks"))[0].kids
			top, _ := strconv.ParseFloat(ticks[len(ticks)-1].attr["y"], 64)
			bottom, _ := strconv.ParseFloat(ticks[0].attr["y"], 64)
			assert.True(t, y >= top-5 && y <= bottom, "baseline y=%g outside [%g, %g]", y, top, bottom)
		})
	}
}

func TestSeriesColoursAndLegend(t *testing.T) {
	var series []Series
	for i := range 12 {
		series = append(series, Series{Name: "s" + strconv.Itoa(i), Y: []float64{float64(i), float64(i + 1)}})
	}
	root := parseXML(t, (&LineChart{Series: series}).SVG())
	paths := root.find(byClass("path", "series"))
	require.Len(t, paths, 12)
	type style struct{ stroke, dash string }
	seen := map[style]bool{}
	for _, p := range paths {
		s := style{p.attr["stroke"], p.attr["stroke-dasharray"]}
		assert.False(t, seen[s], "series %s repeats a style", p.attr["data-series"])
		seen[s] = true
	}
	assert.Len(t, root.find(byClass("g", "legend"))[0].kids, 24, "a swatch and a name per series")
	// A single series needs no legend.
	root = parseXML(t, (&LineChart{Series: series[:1]}).SVG())
	assert.Empty(t, root.find(byClass("g", "legend")))
}

func TestDecimate(t *testing.T) {
	const n = 100_000
	y := make([]float64, n)
	for i := range y {
		y[i] = 2 + math.Sin(float64(i)/500)
	}
	y[12345] = 50 // a spike that must survive
	y[54321] = -40
	c := &LineChart{Series: []Series{{Name: "long", Y: y}}}
	svg := c.SVG()
	d := seriesPaths(t, svg)["long"]
	cmds := strings.Count(d, "L") + 1
	assert.Less(t, cmds, 4*int(chartW), "at most four points per pixel column")
	assert.Less(t, len(svg), 100_000)
	// The spikes reach the top and bottom of the plot.
	var ys []float64
	for _, m := range regexp.MustCompile(`[ML][-\d.]+ ([-\d.]+)`).FindAllStringSubmatch(d, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		ys = append(ys, v)
	}
	lo, hi := ys[0], ys[0]
	for _, v := range ys {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	root := parseXML(t, svg)
	ticks := root.find(byClass("g", "y-ticks"))[0].kids
	assert.Equal(t, "-40", ticks[0].text)
	assert.Equal(t, "60", ticks[len(ticks)-1].text)
	assert.Greater(t, hi-lo, 0.8*(chartH-40-25), "spikes kept")

	// Sparse data passes through untouched.
	px := []pt{{0, 1}, {1.5, 2}, {3, 0}, {4.2, 5}, {7, 1}}
	assert.Equal(t, px, decimate(px))
	// Within one column: first, lowest, highest, last, in order.
	px = []pt{{10.1, 5}, {10.2, 9}, {10.3, 1}, {10.4, 4}, {10.5, 3}, {11, 0}}
	assert.Equal(t, []pt{{10.1, 5}, {10.2, 9}, {10.3, 1}, {10.5, 3}, {11, 0}}, decimate(px))
}

func TestBarChart(t *testing.T) {
	tests := []struct {
		name   string
		labels []string
		values []float64
		bars   int
		nodata bool
	}{
		{"positive", []string{"a", "b", "c"}, []float64{1, 2, 3}, 3, false},
		{"mixed sign", []string{"a", "b"}, []float64{-1, 2}, 2, false},
		{"NaN skipped", []string{"a", "b", "c"}, []float64{1, nan, 3}, 2, false},
		{"all zero", []string{"a", "b"}, []float64{0, 0}, 2, false},
		{"empty", nil, nil, 0, true},
		{"all NaN", []string{"a"}, []float64{nan}, 0, true},
		{"many long labels", manyLabels(40), make([]float64, 40), 40, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &BarChart{Title: "bars", XLabel: "x", YLabel: "y", Labels: tt.labels, Values: tt.values}
			svg := c.SVG()
			root := parseXML(t, svg)
			bars := root.find(byClass("rect", "bar"))
			assert.Len(t, bars, tt.bars)
			assert.Equal(t, tt.nodata, strings.Contains(svg, ">no data</text>"))
			for _, b := range bars {
				h, err := strconv.ParseFloat(b.attr["height"], 64)
				require.NoError(t, err)
				assert.GreaterOrEqual(t, h, 0.0)
				assert.NotEmpty(t, b.attr["data-label"])
			}
			if tt.name == "mixed sign" {
				// The negative bar hangs from zero, the positive one stands on it.
				y0, _ := strconv.ParseFloat(bars[0].attr["y"], 64)
				y1, _ := strconv.ParseFloat(bars[1].attr["y"], 64)
				h1, _ := strconv.ParseFloat(bars[1].attr["height"], 64)
				assert.InDelta(t, y1+h1, y0, 0.11)
			}
		})
	}
}

func manyLabels(n int) []string {
	var out []string
	for i := range n {
		out = append(out, "model.layers."+strconv.Itoa(i)+".self_attn.q_proj")
	}
	return out
}

func TestHeatmap(t *testing.T) {
	tests := []struct {
		name     string
		h        Heatmap
		cells    int
		min, max string // colours of the lowest and highest finite cell
	}{
		{"explicit scale", Heatmap{Values: [][]float64{{0, 1}, {2, 3}}, Min: 0, Max: 3}, 4, "#440154", "#fde725"},
		{"values clamp to the scale", Heatmap{Values: [][]float64{{-5, 1}, {2, 30}}, Min: 0, Max: 3}, 4, "#440154", "#fde725"},
		{"auto scale", Heatmap{Values: [][]float64{{10, 11}, {12, 13}}}, 4, "#440154", "#fde725"},
		{"ragged rows", Heatmap{Values: [][]float64{{1}, {2, 3, 4}}}, 4, "#440154", "#fde725"},
		{"NaN cell", Heatmap{Values: [][]float64{{nan, 1}, {2, 3}}}, 4, "#440154", "#fde725"},
		{"constant", Heatmap{Values: [][]float64{{5, 5}}}, 2, scaleColour(0.5), scaleColour(0.5)},
		{"large", Heatmap{Values: grid(32, 64)}, 32 * 64, "#440154", "#fde725"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg := tt.h.SVG()
			root := parseXML(t, svg)
			cells := root.find(byClass("rect", "cell"))
			require.Len(t, cells, tt.cells)
			lo, hi := math.Inf(1), math.Inf(-1)
			var loC, hiC string
			for _, c := range cells {
				title := c.kids[0]
				require.Equal(t, "title", title.name)
				s := title.text[strings.LastIndex(title.text, ": ")+2:]
				v, err := strconv.ParseFloat(s, 64)
				require.NoError(t, err, title.text)
				if math.IsNaN(v) {
					assert.Equal(t, nanColour, c.attr["fill"])
					continue
				}
				if v < lo {
					lo, loC = v, c.attr["fill"]
				}
				if v > hi {
					hi, hiC = v, c.attr["fill"]
				}
			}
			assert.Equal(t, tt.min, loC)
			assert.Equal(t, tt.max, hiC)
			w, _ := strconv.ParseFloat(root.attr["width"], 64)
			assert.LessOrEqual(t, w, chartW)
		})
	}
	svg := (&Heatmap{Title: "t", XTicks: []string{"q", "k"}, YTicks: []string{"L0"}, Values: [][]float64{{0.25, nan}}}).SVG()
	assert.Contains(t, svg, "<title>L0, q: 0.25</title>")
	assert.Contains(t, svg, "<title>L0, k: NaN</title>")
	assert.Contains(t, (&Heatmap{Title: "t"}).SVG(), ">no data</text>")
}

func grid(rows, cols int) [][]float64 {
	out := make([][]float64, rows)
	for i := range out {
		out[i] = make([]float64, cols)
		for j := range out[i] {
			out[i][j] = float64(i*cols + j)
		}
	}
	return out
}

func TestScaleColour(t *testing.T) {
	assert.Equal(t, "#440154", scaleColour(-1))
	assert.Equal(t, "#440154", scaleColour(0))
	assert.Equal(t, "#26828e", scaleColour(0.5))
	assert.Equal(t, "#fde725", scaleColour(1))
	assert.Equal(t, "#fde725", scaleColour(2))
}

func TestScatter(t *testing.T) {
	tests := []struct {
		name   string
		points []Point
		shown  int
		legend int // legend entries
	}{
		{"one unnamed group", []Point{{X: 1, Y: 2}, {X: 2, Y: 3}}, 2, 0},
		{"groups", []Point{{X: 1, Y: 2, Group: "a"}, {X: 2, Y: 3, Group: "b"}, {X: 3, Y: 1, Group: "a"}}, 3, 2},
		{"NaN skipped", []Point{{X: nan, Y: 2, Group: "a"}, {X: 2, Y: inf, Group: "a"}, {X: 2, Y: 3, Group: "b"}}, 1, 2},
		{"single point", []Point{{X: 1, Y: 1, Label: "only"}}, 1, 0},
		{"none", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg := (&Scatter{Title: "s", Points: tt.points}).SVG()
			root := parseXML(t, svg)
			assert.Len(t, root.find(byClass("circle", "point")), tt.shown)
			assert.Equal(t, tt.shown == 0, strings.Contains(svg, ">no data</text>"))
			if tt.legend == 0 {
				assert.Empty(t, root.find(byClass("g", "legend")))
			} else {
				assert.Len(t, root.find(byClass("g", "legend"))[0].find(func(n *node) bool { return n.name == "circle" }), tt.legend)
			}
		})
	}
	// Groups get distinct colours; labels are written next to points.
	svg := (&Scatter{Points: []Point{{X: 1, Y: 1, Group: "a", Label: "p1"}, {X: 2, Y: 2, Group: "b"}}}).SVG()
	root := parseXML(t, svg)
	pts := root.find(byClass("circle", "point"))
	assert.NotEqual(t, pts[0].attr["fill"], pts[1].attr["fill"])
	assert.Equal(t, []string{"p1"}, mapText(root.find(byClass("text", "point-label"))))
}

// TestSVGStandalone checks that every chart's SVG is a well-formed XML
// document with the required root attributes, including charts with no data.
func TestSVGStandalone(t *testing.T) {
	tests := []struct {
		name  string
		chart interface{ SVG() string }
		kind  string
	}{
		{"line", &LineChart{Title: "L", Series: []Series{{Name: "a", Y: []float64{1, 2}}}}, "line"},
		{"line no data", &LineChart{Title: "L0"}, "line"},
		{"bar", &BarChart{Title: "B", Labels: []string{"x"}, Values: []float64{1}}, "bar"},
		{"bar no data", &BarChart{Title: "B0"}, "bar"},
		{"heatmap", &Heatmap{Title: "H", Values: [][]float64{{1}}}, "heatmap"},
		{"heatmap no data", &Heatmap{Title: "H0"}, "heatmap"},
		{"scatter", &Scatter{Title: "S", Points: []Point{{X: 1, Y: 1}}}, "scatter"},
		{"scatter no data", &Scatter{Title: "S0"}, "scatter"},
		{"untitled", &LineChart{Series: []Series{{Y: []float64{1}}}}, "line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg := tt.chart.SVG()
			root := parseXML(t, svg)
			assert.Equal(t, "svg", root.name)
			assert.Equal(t, "chart", root.attr["class"])
			assert.Equal(t, tt.kind, root.attr["data-kind"])
			assert.Contains(t, root.attr, "data-title")
			assert.Equal(t, "http://www.w3.org/2000/svg", root.attr["xmlns"])
			assert.NotContains(t, svg, "NaN")
			assert.NotContains(t, svg, "Inf")
			for _, p := range root.find(func(n *node) bool { return n.name == "path" }) {
				assert.NotEmpty(t, p.attr["d"])
			}
		})
	}
}

// TestLineDots: a Dots series (two eval points, nothing measured between
// them) is drawn as its points alone, no line; a plain series beside it
// keeps its line.
func TestLineDots(t *testing.T) {
	c := &LineChart{Title: "dots", Series: []Series{
		{Name: "train", X: []float64{0, 1, 2, 3}, Y: []float64{4, 3, 2.5, 2}},
		{Name: "eval", X: []float64{0, 3}, Y: []float64{4.2, 2.4}, Dots: true},
	}}
	svg := c.SVG()
	paths := seriesPaths(t, svg)
	require.Contains(t, paths, "train")
	require.NotContains(t, paths, "eval", "a Dots series has no line")
	var circles int
	for _, g := range parseXML(t, svg).find(byClass("g", "markers")) {
		if g.attr["data-series"] == "eval" {
			circles = len(g.find(func(n *node) bool { return n.name == "circle" }))
		}
	}
	require.Equal(t, 2, circles)
}
