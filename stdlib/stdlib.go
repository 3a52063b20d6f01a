// Package stdlib embeds the Starlark libraries that scripts load as
// "@stdlib//name.star".
package stdlib

import "embed"

// FS holds every .star file of the library.
//
//go:embed *.star
var FS embed.FS
