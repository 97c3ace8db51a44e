package service

import (
	"crypto/rand"
	"encoding/hex"

	"govx/exchange"
)

// Caller is an authenticated subject and where the request came from.
type Caller struct {
	Subject    exchange.Subject
	ClientAddr string
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}
