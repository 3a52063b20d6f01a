package model

import (
	G "gorgonia.org/gorgonia"

	"lens/engine/nn"
)

// The vocabulary tables: the token embedding and an untied head.
const (
	EmbedName = "model.embed_tokens.weight"
	HeadName  = "lm_head.weight"
)

// table returns the vocabulary table name when it is held packed.
func (m *Model) table(name string) (nn.PackedTable, bool) {
	p, ok := m.Packed[name].(nn.PackedTable)
	return p, ok
}

// embedTokens adds the token embedding: rows of the float32 table node
// (returned as table, for a tied head), or rows widened one at a time from
// a table held packed (table is then nil).
func embedTokens[T nn.Float](g *nn.Graph[T], m *Model, w func(string) *G.Node) (table, x *G.Node) {
	if p, ok := m.table(EmbedName); ok {
		return nil, g.PackedEmbed(EmbedName, p)
	}
	table = w(EmbedName)
	return table, g.Embed(table)
}

// headLoss adds the head over the normalised x and the loss: with
// g.HeadChunk, chunk by chunk and without logits; from a packed table, a
// vocabulary block at a time (nn.PackedHead, nn.PackedHeadLoss), which
// gives the float32 table's numbers bit for bit. table is the embedding's
// node when it has one.
func headLoss[T nn.Float](g *nn.Graph[T], m *Model, x, table *G.Node, w func(string) *G.Node) (logits, loss *G.Node) {
	name := HeadName
	if m.Config.TieWordEmbeddings {
		name = EmbedName
	}
	if p, ok := m.table(name); ok {
		if g.HeadChunk > 0 {
			return nil, g.PackedHeadLoss(x, p, g.HeadChunk)
		}
		logits = g.PackedHead(x, p)
		return logits, g.CrossEntropy(logits)
	}
	head := table
	if name == HeadName || head == nil { // untied, or a part without the embedding
		head = w(name)
	}
	if g.HeadChunk > 0 { // Logits stays nil: they are never whole
		return nil, g.HeadLoss(x, head, g.HeadChunk)
	}
	logits = g.Linear(x, head)
	return logits, g.CrossEntropy(logits)
}
