package client

import "time"

// SetKeepalive sets the silence before a ping and the wait for its answer for the
// clients made after it, and returns what puts them back.
func SetKeepalive(silence, answer time.Duration) (restore func()) {
	oldTime, oldTimeout := keepaliveTime, keepaliveTimeout
	keepaliveTime, keepaliveTimeout = silence, answer
	return func() { keepaliveTime, keepaliveTimeout = oldTime, oldTimeout }
}
