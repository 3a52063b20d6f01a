package generate

import (
	"fmt"

	"lens/engine/model"
	"lens/engine/nn"
)

// packedTables takes the vocabulary tables of a quantized base, which
// hold no float32 data.
func (g *Generator) packedTables(m *model.Model) error {
	table := func(name string) (nn.PackedTable, error) {
		p, ok := m.Packed[name]
		if !ok {
			return nil, nil
		}
		t, ok := p.(nn.PackedTable)
		if !ok {
			return nil, fmt.Errorf("generate: %s is held as %T, which cannot widen by rows", name, p)
		}
		return t, nil
	}
	var err error
	if g.embedP, err = table(model.EmbedName); err != nil {
		return err
	}
	g.headP = g.embedP
	if !g.cfg.TieWordEmbeddings {
		g.headP, err = table(model.HeadName)
	}
	return err
}

// tableBlock is how many values of a packed head are widened at once.
const tableBlock = 1 << 22

// widen returns p's weight in the session's scratch (one weight at a time).
func (s *Session) widen(p nn.Packed) []float32 {
	o, i := p.Dims()
	if cap(s.wide) < o*i {
		s.wide = make([]float32, o*i)
	}
	w := s.wide[:o*i]
	p.Widen(w)
	return w
}

// embedRow writes token id's embedding to dst.
func (s *Session) embedRow(id int32, dst []float32) {
	g := s.g
	if g.embedP != nil {
		g.embedP.WidenRows(int(id), int(id)+1, dst)
		return
	}
	copy(dst, g.embed[int(id)*g.hidden:int(id+1)*g.hidden])
}

// headLogits sets s.logits = W·x for the head W, a block of vocabulary
// rows at a time when it is packed: each row's sum is matVec's whatever
// the rows around it, so the logits equal a float32 head's bit for bit.
func (s *Session) headLogits(x []float32) {
	g := s.g
	h := g.hidden
	if g.headP == nil {
		g.matVec(g.head, g.voc, h, x, s.logits)
		return
	}
	rows := max(1, tableBlock/h)
	for v0 := 0; v0 < g.voc; v0 += rows {
		v1 := min(g.voc, v0+rows)
		if cap(s.wide) < (v1-v0)*h {
			s.wide = make([]float32, rows*h)
		}
		w := s.wide[:(v1-v0)*h]
		g.headP.WidenRows(v0, v1, w)
		g.matVec(w, v1-v0, h, x, s.logits[v0:v1])
	}
}
