package collect

import "lens/kv"

func kvTensor(name string, shape []int, data []float32) kv.Tensor {
	return kv.Tensor{Name: name, Shape: append([]int(nil), shape...), Data: append([]float32(nil), data...)}
}
