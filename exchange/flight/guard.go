package flight

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// guard bounds the connections nobody has authenticated on: each may stay open for
// timeout before its first authenticated call, and at most max of them are open at
// once. Without it, anyone who can reach the port holds goroutines, buffers and file
// descriptors for as long as they like by opening connections and sending nothing
// (or a TLS handshake that never ends, or only calls with bad credentials).
// Authentication is per call; the guard learns of it from the auth middleware, which
// names the connection by its remote address (unique per TCP connection).
type guard struct {
	timeout time.Duration
	max     int
	log     *slog.Logger

	mu      sync.Mutex
	conns   map[string]*guardedConn // connections not yet authenticated, by remote address
	refused uint64                  // connections closed on arrival: too many unauthenticated
	expired uint64                  // connections closed for not authenticating in time
}

func newGuard(timeout time.Duration, max int, log *slog.Logger) *guard {
	return &guard{timeout: timeout, max: max, log: log, conns: map[string]*guardedConn{}}
}

func (g *guard) listener(l net.Listener) net.Listener { return guardListener{l, g} }

type guardListener struct {
	net.Listener
	g *guard
}

// Accept returns the next connection the guard admits; the ones it refuses are closed
// here, never handed to gRPC.
func (l guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := l.g.admit(c); gc != nil {
			return gc, nil
		}
	}
}

type guardedConn struct {
	net.Conn
	g     *guard
	key   string
	timer *time.Timer
	once  sync.Once
}

func (g *guard) admit(c net.Conn) *guardedConn {
	gc := &guardedConn{Conn: c, g: g, key: c.RemoteAddr().String()}
	g.mu.Lock()
	if len(g.conns) >= g.max {
		g.refused++
		n := g.refused
		g.mu.Unlock()
		if n%1000 == 1 {
			g.log.Warn("flight: too many unauthenticated connections; closing new ones as they arrive",
				"max", g.max, "refused_total", n, "client", gc.key)
		}
		c.Close()
		return nil
	}
	g.conns[gc.key] = gc
	gc.timer = time.AfterFunc(g.timeout, gc.expire)
	g.mu.Unlock()
	return gc
}

// authenticated records that the connection from addr carried an authenticated call:
// from now on it is gRPC's keepalive that decides how long it may stay.
func (g *guard) authenticated(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gc, ok := g.conns[addr]; ok {
		gc.timer.Stop()
		delete(g.conns, addr)
	}
}

func (gc *guardedConn) expire() {
	g := gc.g
	g.mu.Lock()
	pending := g.conns[gc.key] == gc
	if pending {
		g.expired++
	}
	g.mu.Unlock()
	if pending {
		gc.Close()
	}
}

func (gc *guardedConn) Close() error {
	var err error
	gc.once.Do(func() {
		g := gc.g
		g.mu.Lock()
		if g.conns[gc.key] == gc {
			gc.timer.Stop()
			delete(g.conns, gc.key)
		}
		g.mu.Unlock()
		err = gc.Conn.Close()
	})
	return err
}

// closeUnauthenticated closes every connection that has not authenticated.
func (g *guard) closeUnauthenticated() {
	g.mu.Lock()
	pending := make([]*guardedConn, 0, len(g.conns))
	for _, gc := range g.conns {
		pending = append(pending, gc)
	}
	g.mu.Unlock()
	for _, gc := range pending {
		gc.Close()
	}
}

// stats reports the unauthenticated connections open now, and how many were refused
// on arrival and closed for not authenticating in time.
func (g *guard) stats() (open int, refused, expired uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns), g.refused, g.expired
}
