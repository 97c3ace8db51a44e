// Package netopt sets the socket options the exchange serves pulls with, on the
// connections of its Flight and HTTP listeners.
package netopt

import (
	"net"

	"golang.org/x/sys/unix"
)

// Listener returns ln with each connection it accepts bounded in the bytes its kernel
// holds unsent (TCP_NOTSENT_LOWAT, 64 KB): a pull's write then returns as the client
// takes each part of it, not once a third of a send buffer of megabytes has drained, so
// the stall timeout (service.WithPullStallTimeout) tells a client that reads slowly
// from one that stopped, and a stalled client pins that much less of the exchange's
// memory. Where the option cannot be set (not TCP, not Linux) the connection is served
// as it is.
func Listener(ln net.Listener) net.Listener { return lowatListener{ln} }

type lowatListener struct{ net.Listener }

// notSentLowat is the unsent bytes a connection's kernel keeps before a write waits.
const notSentLowat = 64 << 10

func (l lowatListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat)
			})
		}
	}
	return c, nil
}
