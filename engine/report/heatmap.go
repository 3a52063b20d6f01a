package report

import (
	"fmt"
	"math"
	"strconv"
)

// Heatmap colours a grid of values: Values[row][col], row 0 at the top,
// labelled by YTicks (rows) and XTicks (columns); missing tick labels are
// replaced by the index. Colours run from Min (dark purple) to Max (yellow)
// on the viridis scale, with values outside clamped; when Min ≥ Max the
// scale spans the finite values. NaN and ±Inf cells are grey. Rows may be
// ragged.
type Heatmap struct {
	Title, XLabel, YLabel string
	XTicks, YTicks        []string
	Values                [][]float64
	Min, Max              float64
}

// viridis, sampled at nine evenly spaced points.
var viridis = [][3]float64{
	{0x44, 0x01, 0x54}, {0x48, 0x28, 0x78}, {0x3e, 0x49, 0x89},
	{0x31, 0x68, 0x8e}, {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89},
	{0x35, 0xb7, 0x79}, {0x6e, 0xce, 0x58}, {0xfd, 0xe7, 0x25},
}

// scaleColour maps t in [0, 1] (clamped) to a viridis colour.
func scaleColour(t float64) string {
	t = math.Max(0, math.Min(1, t))
	f := t * float64(len(viridis)-1)
	i := min(int(f), len(viridis)-2)
	u := f - float64(i)
	var c [3]int
	for k := range c {
		c[k] = int(math.Round(float64(viridis[i][k]*(1-u)) + float64(viridis[i+1][k]*u)))
	}
	return fmt.Sprintf("#%02x%02x%02x", c[0], c[1], c[2])
}

const nanColour = "#d9d9d9"

func (h *Heatmap) scale() (lo, hi float64) {
	if h.Min < h.Max && finite(h.Min) && finite(h.Max) {
		return h.Min, h.Max
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, row := range h.Values {
		for _, v := range row {
			if finite(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if lo > hi {
		return 0, 1
	}
	return lo, hi
}

func tickLabel(ticks []string, i int) string {
	if i < len(ticks) {
		return ticks[i]
	}
	return strconv.Itoa(i)
}

// SVG renders the heatmap as a standalone <svg class="chart"> element with
// one <rect class="cell"> per value, its value in a <title> tooltip, and a
// colour bar on the right. The height grows with the number of rows.
func (h *Heatmap) SVG() string {
	rows, cols := len(h.Values), 0
	for _, r := range h.Values {
		cols = max(cols, len(r))
	}
	lo, hi := h.scale()
	top := 16.0
	if h.Title != "" {
		top = 40
	}
	maxY, maxX := 0.0, 0.0
	for i := range rows {
		maxY = math.Max(maxY, textW(clip(tickLabel(h.YTicks, i), labelMaxRunes), fontSize))
	}
	for j := range cols {
		maxX = math.Max(maxX, textW(clip(tickLabel(h.XTicks, j), labelMaxRunes), fontSize))
	}
	left := tickLen + 12 + maxY
	if h.YLabel != "" {
		left += 20
	}
	const right = 100.0 // colour bar and its labels
	cellW, cellH := 40.0, 24.0
	if cols > 0 {
		cellW = math.Min(48, (chartW-left-right)/float64(cols))
	}
	// Column labels that do not fit a cell are rotated; the first one must
	// not run off the left edge.
	rotated := maxX > cellW-4
	if need := maxX*0.71 + 8; rotated && need > left {
		left = need
		cellW = math.Min(48, (chartW-left-right)/float64(cols))
	}
	if rows > 0 {
		cellH = math.Min(32, 360/float64(rows))
	}
	a := area{left, top, cellW * float64(max(cols, 1)), cellH * float64(max(rows, 1))}
	if rows == 0 || cols == 0 {
		a.w, a.h = chartW-left-right, 240
	}
	bottom := tickLen + 20.0
	if rotated {
		bottom = tickLen + 16 + maxX*0.71
	}
	if h.XLabel != "" {
		bottom += 20
	}
	height := top + a.h + bottom
	width := math.Max(a.x0+a.w+right, math.Min(chartW, textW(h.Title, 14)+40))

	var b svgw
	b.open("heatmap", h.Title, width, height)
	if rows == 0 || cols == 0 {
		b.noData(a)
		b.axisLabels(a, h.XLabel, h.YLabel, height-10)
		return b.close()
	}
	b.WriteString(`<g class="cells" shape-rendering="crispEdges">`)
	showValues := cellW >= 36 && cellH >= 16
	for i, row := range h.Values {
		for j, v := range row {
			x, y := a.x0+float64(float64(j)*cellW), a.y0+float64(float64(i)*cellH)
			fill := nanColour
			t := 0.0
			if finite(v) {
				t = 0.5
				if hi > lo {
					t = (v - lo) / (hi - lo)
				}
				fill = scaleColour(t)
			}
			b.f("\n"+`<rect class="cell" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s, %s: %s</title></rect>`,
				num(x), num(y), num(cellW), num(cellH), fill, esc(tickLabel(h.YTicks, i)), esc(tickLabel(h.XTicks, j)), fmtNum(v, 6))
			if showValues {
				ink := "#fff"
				if finite(v) && t > 0.6 {
					ink = "#000"
				}
				if !finite(v) {
					ink = "#555"
				}
				b.f(`<text x="%s" y="%s" text-anchor="middle" font-size="10" fill="%s" pointer-events="none">%s</text>`,
					num(x+cellW/2), num(y+cellH/2+3.5), ink, esc(fmtNum(v, 3)))
			}
		}
	}
	b.WriteString("\n</g>\n")
	b.f(`<rect class="frame" x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#333"/>`+"\n", num(a.x0), num(a.y0), num(a.w), num(a.h))

	// Row labels, thinned to one per 13px.
	b.WriteString(`<g class="y-ticks" text-anchor="end" fill="#444">`)
	for i := 0; i < rows; i += int(math.Ceil(13 / cellH)) {
		b.f(`<text x="%s" y="%s">%s</text>`, num(a.x0-6), num(a.y0+float64((float64(i)+0.5)*cellH)+4), esc(clip(tickLabel(h.YTicks, i), labelMaxRunes)))
	}
	b.WriteString("</g>\n")
	// Column labels, rotated when they do not fit a cell.
	b.WriteString(`<g class="x-ticks" fill="#444">`)
	every := 1
	if rotated {
		every = int(math.Ceil(14 / cellW))
	}
	ly := a.y0 + a.h + tickLen + 13
	for j := 0; j < cols; j += every {
		x := a.x0 + float64((float64(j)+0.5)*cellW)
		l := esc(clip(tickLabel(h.XTicks, j), labelMaxRunes))
		if rotated {
			b.f(`<text x="%s" y="%s" text-anchor="end" transform="rotate(-45 %s %s)">%s</text>`, num(x+4), num(ly-4), num(x+4), num(ly-4), l)
		} else {
			b.f(`<text x="%s" y="%s" text-anchor="middle">%s</text>`, num(x), num(ly), l)
		}
	}
	b.WriteString("</g>\n")
	b.axisLabels(a, h.XLabel, h.YLabel, height-10)

	// Colour bar: 40 bands from lo (bottom) to hi (top) with ticks inside [lo, hi].
	const bands = 40
	bx, bw := a.x0+a.w+16, 14.0
	bh := a.h
	b.WriteString(`<g class="colour-bar" shape-rendering="crispEdges">`)
	for k := range bands {
		y := a.y0 + bh - float64(float64(k+1)*bh)/bands
		b.f(`<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>`, num(bx), num(y), num(bw), num(bh/bands+0.5), scaleColour((float64(k)+0.5)/bands))
	}
	b.f(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#333"/>`, num(bx), num(a.y0), num(bw), num(bh))
	b.WriteString("</g>\n")
	ct := linearTicks(lo, hi, max(2, int(bh/30)))
	b.WriteString(`<g class="colour-ticks" fill="#444">`)
	for i, v := range ct.vals {
		eps := (hi - lo) * 1e-9
		if v < lo-eps || v > hi+eps || hi <= lo {
			continue
		}
		y := a.y0 + bh - float64((v-lo)/(hi-lo)*bh)
		b.f(`<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="#333"/><text x="%s" y="%s">%s</text>`, num(bx+bw), num(bx+bw+4), num(y), num(y), num(bx+bw+7), num(y+4), esc(ct.labels[i]))
	}
	if hi <= lo {
		b.f(`<text x="%s" y="%s">%s</text>`, num(bx+bw+7), num(a.y0+bh/2+4), esc(fmtNum(lo, 4)))
	}
	b.WriteString("</g>\n")
	return b.close()
}
