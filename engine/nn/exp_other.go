//go:build !amd64

package nn

const haveExpAsm = false

func expAsm(n int, dst, src *float32)     { panic("nn: no exp kernel") }
func sigmoidAsm(n int, dst, src *float32) { panic("nn: no sigmoid kernel") }
