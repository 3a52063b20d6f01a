package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Chart geometry, in SVG user units (CSS pixels at 100%).
const (
	chartW   = 720.0
	chartH   = 380.0
	fontSize = 11.0
	tickLen  = 5.0
)

// palette is Tableau 10: distinct, colour-blind friendly hues. Series past
// the tenth reuse a colour with a dash pattern.
var palette = []string{
	"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
	"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
}

var dashes = []string{"", "6 3", "2 3", "8 3 2 3"}

func colour(i int) string { return palette[i%len(palette)] }
func dash(i int) string   { return dashes[(i/len(palette))%len(dashes)] }

// esc makes s safe as HTML/SVG text or a quoted attribute value: it drops
// characters XML forbids, repairs invalid UTF-8 and escapes <, >, &, ' and ".
func esc(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20 || r == 0x7f || r == 0xfffe || r == 0xffff:
			return -1
		}
		return r
	}, s)
	return html.EscapeString(s)
}

// num writes a coordinate with at most one decimal.
func num(v float64) string {
	v = math.Round(v*10) / 10
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// textW estimates the rendered width of s at the given font size.
func textW(s string, size float64) float64 {
	return float64(utf8.RuneCountInString(s)) * size * 0.6
}

// clip shortens s to at most n runes, ending it with an ellipsis.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// svgw accumulates one chart's markup.
type svgw struct{ strings.Builder }

func (b *svgw) f(format string, args ...any) { fmt.Fprintf(b, format, args...) }

// open starts the <svg class="chart"> element and draws the title.
func (b *svgw) open(kind, title string, w, h float64) {
	b.f(`<svg class="chart" data-kind="%s" data-title="%s" xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s" font-family="DejaVu Sans, Verdana, Arial, sans-serif" font-size="%g">`,
		kind, esc(title), num(w), num(h), num(w), num(h), esc(title), fontSize)
	b.f("\n"+`<rect width="%s" height="%s" fill="#fff"/>`+"\n", num(w), num(h))
	if title != "" {
		b.f(`<text class="title" x="%s" y="24" text-anchor="middle" font-size="14" font-weight="bold" fill="#1d2330">%s</text>`+"\n", num(w/2), esc(title))
	}
}

func (b *svgw) close() string {
	b.WriteString("</svg>")
	return b.String()
}

// area is the plot rectangle inside a chart. Products are converted
// explicitly so that no platform fuses them into FMAs: the output, and the
// golden file, are the same everywhere.
type area struct{ x0, y0, w, h float64 }

func (a area) px(t *ticks, v float64) float64 { return a.x0 + float64(t.frac(v)*a.w) }
func (a area) py(t *ticks, v float64) float64 { return a.y0 + a.h - float64(t.frac(v)*a.h) }

// noData draws an empty frame that says "no data".
func (b *svgw) noData(a area) {
	b.f(`<rect class="frame" x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#ccc"/>`+"\n", num(a.x0), num(a.y0), num(a.w), num(a.h))
	b.f(`<text class="nodata" x="%s" y="%s" text-anchor="middle" font-size="14" fill="#888">no data</text>`+"\n", num(a.x0+a.w/2), num(a.y0+a.h/2+5))
}

// axisLabels draws the x label centred under the plot and the y label
// rotated along its left side.
func (b *svgw) axisLabels(a area, xlabel, ylabel string, xy float64) {
	if xlabel != "" {
		b.f(`<text class="axis-label" x="%s" y="%s" text-anchor="middle" font-size="12" fill="#333">%s</text>`+"\n", num(a.x0+a.w/2), num(xy), esc(xlabel))
	}
	if ylabel != "" {
		cy := a.y0 + a.h/2
		b.f(`<text class="axis-label" x="16" y="%s" transform="rotate(-90 16 %s)" text-anchor="middle" font-size="12" fill="#333">%s</text>`+"\n", num(cy), num(cy), esc(ylabel))
	}
}

// yAxis draws horizontal grid lines, the left axis line, its ticks and labels.
func (b *svgw) yAxis(a area, t *ticks) {
	b.WriteString(`<g class="grid" stroke="#e8e8e8">`)
	for _, v := range t.vals {
		y := num(a.py(t, v))
		b.f(`<line x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(a.x0), num(a.x0+a.w), y, y)
	}
	b.WriteString("</g>\n")
	b.f(`<g class="y-axis" stroke="#333"><line x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(a.x0), num(a.x0), num(a.y0), num(a.y0+a.h))
	for _, v := range t.vals {
		y := num(a.py(t, v))
		b.f(`<line x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(a.x0-tickLen), num(a.x0), y, y)
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g class="y-ticks" text-anchor="end" fill="#444">`)
	for i, v := range t.vals {
		b.f(`<text x="%s" y="%s">%s</text>`, num(a.x0-tickLen-3), num(a.py(t, v)+4), esc(t.labels[i]))
	}
	b.WriteString("</g>\n")
}

// xAxis draws vertical grid lines, the bottom axis line, its ticks and labels.
func (b *svgw) xAxis(a area, t *ticks) {
	bottom := num(a.y0 + a.h)
	b.WriteString(`<g class="grid" stroke="#e8e8e8">`)
	for _, v := range t.vals {
		x := num(a.px(t, v))
		b.f(`<line x1="%s" x2="%s" y1="%s" y2="%s"/>`, x, x, num(a.y0), bottom)
	}
	b.WriteString("</g>\n")
	b.f(`<g class="x-axis" stroke="#333"><line x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(a.x0), num(a.x0+a.w), bottom, bottom)
	for _, v := range t.vals {
		x := num(a.px(t, v))
		b.f(`<line x1="%s" x2="%s" y1="%s" y2="%s"/>`, x, x, bottom, num(a.y0+a.h+tickLen))
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g class="x-ticks" text-anchor="middle" fill="#444">`)
	for i, v := range t.vals {
		b.f(`<text x="%s" y="%s">%s</text>`, num(a.px(t, v)), num(a.y0+a.h+tickLen+13), esc(t.labels[i]))
	}
	b.WriteString("</g>\n")
}

// legendEntry is one row of a legend: a line swatch or a dot.
type legendEntry struct {
	name, colour, dash string
	dot, empty         bool
}

const legendMaxRunes = 24

func legendWidth(entries []legendEntry) float64 {
	w := 0.0
	for _, e := range entries {
		name := clip(e.name, legendMaxRunes)
		if e.empty {
			name += " (no data)"
		}
		w = math.Max(w, textW(name, fontSize))
	}
	return 12 + 26 + w
}

// legend draws entries top-down starting at (x, y).
func (b *svgw) legend(x, y float64, entries []legendEntry) {
	b.WriteString(`<g class="legend">`)
	for i, e := range entries {
		cy := y + float64(i)*18
		switch {
		case e.dot:
			b.f(`<circle cx="%s" cy="%s" r="4" fill="%s"/>`, num(x+10), num(cy), e.colour)
		default:
			b.f(`<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s" stroke-width="2.5"%s/>`, num(x), num(x+20), num(cy), num(cy), e.colour, dashAttr(e.dash))
		}
		name := esc(clip(e.name, legendMaxRunes))
		fill := "#333"
		if e.empty {
			name += " (no data)"
			fill = "#999"
		}
		b.f(`<text x="%s" y="%s" fill="%s">%s<title>%s</title></text>`, num(x+26), num(cy+4), fill, name, esc(e.name))
	}
	b.WriteString("</g>\n")
}

func dashAttr(d string) string {
	if d == "" {
		return ""
	}
	return ` stroke-dasharray="` + d + `"`
}

// xyLayout places the plot area of a chart with numeric x and y axes and
// chooses ticks whose labels fit: y first (its labels set the left margin),
// then x with as many ticks as the width allows.
func xyLayout(title, xlabel, ylabel string, xlo, xhi, ylo, yhi float64, logY bool, legendW float64) (area, ticks, ticks) {
	top := 16.0
	if title != "" {
		top = 40
	}
	bottom := tickLen + 20.0
	if xlabel != "" {
		bottom += 20
	}
	plotH := chartH - top - bottom
	var yt ticks
	if logY {
		yt = logTicks(ylo, yhi, int(plotH/28))
	} else {
		yt = linearTicks(ylo, yhi, int(plotH/45))
	}
	left := tickLen + 14 + maxTextW(yt.labels)
	if ylabel != "" {
		left += 20
	}
	right := 24.0
	if legendW > 0 {
		right = 16 + legendW
	}
	plotW := chartW - left - right
	var xt ticks
	for target := int(plotW / 80); ; target-- {
		xt = linearTicks(xlo, xhi, target)
		if target <= 2 || plotW/float64(len(xt.vals)-1) >= maxTextW(xt.labels)+12 {
			break
		}
	}
	return area{left, top, plotW, plotH}, xt, yt
}

func maxTextW(labels []string) float64 {
	w := 0.0
	for _, l := range labels {
		w = math.Max(w, textW(l, fontSize))
	}
	return w
}
