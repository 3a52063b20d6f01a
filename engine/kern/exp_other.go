//go:build !amd64 && !arm64

package kern

const haveExpAsm = false

func expAsm(n int, dst, src *float32)     { panic("kern: no exp kernel") }
func sigmoidAsm(n int, dst, src *float32) { panic("kern: no sigmoid kernel") }

func softmaxRowAsm(x *float32, n int) (m, sum float32) { panic("kern: no softmax kernel") }
func softmaxBackRowAsm(p, d *float32, n int)           { panic("kern: no softmax kernel") }
