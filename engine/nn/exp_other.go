//go:build !amd64

package nn

const haveExpAsm = false

func expAsm(n int, dst, src *float32)     { panic("nn: no exp kernel") }
func sigmoidAsm(n int, dst, src *float32) { panic("nn: no sigmoid kernel") }

func softmaxRowAsm(x *float32, n int) (m, sum float32) { panic("nn: no softmax kernel") }
func softmaxBackRowAsm(p, d *float32, n int)           { panic("nn: no softmax kernel") }
