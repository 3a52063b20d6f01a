package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ticks is an axis: its domain [lo, hi] and the labelled tick positions in it.
type ticks struct {
	lo, hi float64
	log    bool
	vals   []float64
	labels []string
}

// frac maps v to [0, 1] across the domain (linearly, or in log10 for a log axis).
func (t *ticks) frac(v float64) float64 {
	if t.log {
		l, h := math.Log10(t.lo), math.Log10(t.hi)
		return (math.Log10(v) - l) / (h - l)
	}
	return (v - t.lo) / (t.hi - t.lo)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// floorLog10 is floor(log10(v)) for v > 0, exact at powers of ten.
func floorLog10(v float64) int {
	e := int(math.Floor(math.Log10(v)))
	if e < -300 || e > 300 {
		return e // math.Pow10 is not exact out there; Log10 is close enough
	}
	if math.Pow10(e+1) <= v {
		e++
	}
	if math.Pow10(e) > v {
		e--
	}
	return e
}

// decimal returns k·10^exp as the float64 nearest to the decimal value, so
// that ticks are 0.3 rather than 0.30000000000000004.
func decimal(k float64, exp int) float64 {
	if exp >= 0 {
		return k * math.Pow10(exp)
	}
	return k / math.Pow10(-exp)
}

// niceStep rounds raw (> 0) to mant·10^exp with mant in {1, 2, 5}.
func niceStep(raw float64) (mant float64, exp int) {
	exp = floorLog10(raw)
	f := raw / math.Pow10(exp)
	switch {
	case f < 1.5:
		mant = 1
	case f < 3:
		mant = 2
	case f < 7:
		mant = 5
	default:
		mant, exp = 1, exp+1
	}
	return mant, exp
}

// linearTicks chooses about target round ticks (step 1, 2 or 5 times a power
// of ten) covering [lo, hi]; the domain is widened outward to the first and
// last tick. A constant range is widened by 10% of its magnitude (to [-1, 1]
// around zero); non-finite bounds give [0, 1].
func linearTicks(lo, hi float64, target int) ticks {
	if target < 2 {
		target = 2
	}
	if !finite(lo) || !finite(hi) {
		lo, hi = 0, 1
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	mag := math.Max(math.Abs(lo), math.Abs(hi))
	if hi-lo <= mag*1e-9 {
		if mag == 0 {
			lo, hi = -1, 1
		} else {
			mid := (lo + hi) / 2
			lo, hi = mid-float64(mag*0.1), mid+float64(mag*0.1)
		}
	}
	mant, exp := niceStep((hi - lo) / float64(target-1))
	step := decimal(mant, exp)
	klo := math.Floor(lo/step + 1e-9)
	khi := math.Ceil(hi/step - 1e-9)
	t := ticks{}
	for k := klo; k <= khi; k++ {
		t.vals = append(t.vals, decimal(k*mant, exp))
	}
	t.lo, t.hi = t.vals[0], t.vals[len(t.vals)-1]
	t.labels = linearLabels(t.vals, exp)
	return t
}

// linearLabels formats ticks whose step is a multiple of 10^exp: fixed
// decimals normally, mantissa-exponent ("1.5e6", "2.0e-7") for very large or
// very small values. Zero is always "0".
func linearLabels(vals []float64, exp int) []string {
	maxAbs := 0.0
	for _, v := range vals {
		maxAbs = math.Max(maxAbs, math.Abs(v))
	}
	sci := maxAbs >= 1e6 || exp < -5
	prec := 0
	if sci && maxAbs > 0 {
		prec = max(floorLog10(maxAbs)-exp, 0)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		switch {
		case v == 0:
			out[i] = "0"
		case sci:
			out[i] = tidyExp(strconv.FormatFloat(v, 'e', prec, 64))
		default:
			out[i] = strconv.FormatFloat(v, 'f', max(0, -exp), 64)
		}
	}
	return out
}

// tidyExp shortens Go's exponent form: "1.5e+06" → "1.5e6", "2e-07" → "2e-7".
func tidyExp(s string) string {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return s
	}
	mant, e := s[:i], s[i+1:]
	sign := ""
	switch {
	case strings.HasPrefix(e, "+"):
		e = e[1:]
	case strings.HasPrefix(e, "-"):
		sign, e = "-", e[1:]
	}
	e = strings.TrimLeft(e, "0")
	if e == "" {
		return mant
	}
	return mant + "e" + sign + e
}

// logTicks covers [lo, hi] (both > 0) with whole decades: every decade when
// they fit in about target ticks, every k-th otherwise, and 2× and 5× ticks
// in between when even those fit. Bad bounds give [1, 10].
func logTicks(lo, hi float64, target int) ticks {
	if target < 2 {
		target = 2
	}
	if !(lo > 0) || !(hi > 0) || !finite(lo) || !finite(hi) {
		lo, hi = 1, 10
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	elo := floorLog10(lo)
	ehi := floorLog10(hi)
	if math.Pow10(ehi) < hi {
		ehi++
	}
	if elo == ehi {
		elo, ehi = elo-1, ehi+1
	}
	stride := 1
	if d := ehi - elo; d > target-1 {
		stride = (d + target - 2) / (target - 1)
		elo = floorDiv(elo, stride) * stride
		ehi = elo + (ehi-elo+stride-1)/stride*stride
	}
	minor := stride == 1 && 3*(ehi-elo)+1 <= target
	t := ticks{log: true}
	for e := elo; e <= ehi; e += stride {
		for _, m := range []float64{1, 2, 5} {
			if m > 1 && (!minor || e == ehi) {
				continue
			}
			t.vals = append(t.vals, decimal(m, e))
			t.labels = append(t.labels, logLabel(m, e))
		}
	}
	t.lo, t.hi = t.vals[0], t.vals[len(t.vals)-1]
	return t
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// logLabel writes m·10^e as a plain decimal from 0.001 to 9999 and as
// "1e4" or "2e-5" outside that.
func logLabel(m float64, e int) string {
	if e >= -3 && e <= 3 {
		return strconv.FormatFloat(decimal(m, e), 'f', -1, 64)
	}
	return fmt.Sprintf("%ge%d", m, e)
}

// fmtNum writes v with prec significant digits for tooltips and value labels.
func fmtNum(v float64, prec int) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return tidyExp(strconv.FormatFloat(v, 'g', prec, 64))
}
