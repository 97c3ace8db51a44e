package servicetest

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SlowProxy relays TCP connections to target and returns its address. What target
// sends reaches the client at most n bytes every tick (the first at once; with a tick
// longer than the test, only those n bytes: a route that went silent); what the client
// sends passes as it comes. Its own connection to target takes at most 64 KB ahead (a receive buffer
// set turns the kernel's growing one off), so target sees a client that reads slowly
// but never stops.
func SlowProxy(t testing.TB, target string, n int, tick time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	done := make(chan struct{})
	// track keeps c to close at the end; false once the proxy is closing.
	track := func(c ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c...)
		return !closed
	}
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) }); cerr != nil {
			return cerr
		}
		return err
	}}
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := dialer.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			if !track(client, server) {
				client.Close()
				server.Close()
				return
			}
			wg.Go(func() {
				io.Copy(server, client)
				server.Close()
			})
			wg.Go(func() {
				defer client.Close()
				buf := make([]byte, n)
				tk := time.NewTicker(tick)
				defer tk.Stop()
				for {
					k, err := server.Read(buf)
					if k > 0 {
						if _, werr := client.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
					select {
					case <-tk.C:
					case <-done:
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		close(done)
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
