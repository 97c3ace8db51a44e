package store

import (
	"testing"

	"govx/exchange/mask"
	"govx/schemas"
)

// TestMaskMetadataKey: the mask package names the mask applied under its own constant
// (it imports nothing of govx but ident); it must be the key the dataset schemas use for
// a column's default mask, or clients would find the mask under two names.
func TestMaskMetadataKey(t *testing.T) {
	if mask.MetaKey != schemas.MetaMask {
		t.Fatalf("mask.MetaKey %q differs from schemas.MetaMask %q", mask.MetaKey, schemas.MetaMask)
	}
}
