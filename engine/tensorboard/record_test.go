package tensorboard

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMaskedCRCMatchesTensorFlow(t *testing.T) {
	// From a real TensorFlow event file (tensorboard/data/server/masked_crc.rs).
	require.Equal(t, uint32(0x5794d08a), maskedCRC([]byte("\x1a\x11CRC test, one two")))
}

func TestDefaultLimitsAreTensorFlows(t *testing.T) {
	n := len(defaultLimits)
	require.Equal(t, 1, n%2, "symmetric around 0")
	mid := n / 2
	require.Equal(t, 0.0, defaultLimits[mid])
	require.Equal(t, 1e-12, defaultLimits[mid+1])
	require.Equal(t, math.MaxFloat64, defaultLimits[n-1])
	require.Equal(t, -math.MaxFloat64, defaultLimits[0])
	// 1e-12·1.1^k < 1e20 for k = 0..773, then DBL_MAX: 775 positive limits.
	require.Equal(t, 775, n-mid-1)
	require.Less(t, defaultLimits[n-2], 1e20)
	require.GreaterOrEqual(t, defaultLimits[n-2]*1.1, 1e20)
	for i := 1; i < n; i++ {
		require.Less(t, defaultLimits[i-1], defaultLimits[i])
		require.Equal(t, -defaultLimits[n-1-i], defaultLimits[i])
	}
}

func TestVarint(t *testing.T) {
	cases := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0}},
		{1, []byte{1}},
		{300, []byte{0xac, 0x02}},
		{math.MaxUint64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, c := range cases {
		require.Equal(t, c.want, appendVarint(nil, c.v), "%d", c.v)
	}
}
