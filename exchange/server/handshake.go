package server

import (
	"log/slog"
	"net"
	"strings"

	"govx/exchange/service"
)

// handshakes receives the failed TLS handshakes of both API listeners: gRPC hands them
// over (xflight.WithHandshakeErrors), net/http only writes them to its ErrorLog, so
// that log is read here too. A refused client certificate (another CA's, expired, a
// server certificate, revoked) is counted and logged, bounded, by the service; other
// failures (a port probe, a client that does not trust us) are debug lines.
type handshakes struct {
	svc *service.Service
	log *slog.Logger
}

// failed reports one failed handshake on listener.
func (h handshakes) failed(listener, remote string, err error) {
	msg := err.Error()
	if strings.Contains(msg, "certificate") && !strings.Contains(msg, "remote error") {
		h.svc.HandshakeRefused(listener, remote, err)
		return
	}
	h.log.Debug("TLS handshake failed", "listener", listener, "client", remote, "err", err)
}

// flight is the Flight server's handshake hook.
func (h handshakes) flight(remote net.Addr, err error) { h.failed("flight", remote.String(), err) }

// httpErrorLog is the HTTP server's ErrorLog: handshake failures go to failed, any
// other line to the structured log as a warning.
func (h handshakes) httpErrorLog() *slogWriter { return &slogWriter{h} }

type slogWriter struct{ h handshakes }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if rest, ok := strings.CutPrefix(line, "http: TLS handshake error from "); ok {
		addr, msg, _ := strings.Cut(rest, ": ")
		w.h.failed("https", addr, handshakeError(msg))
		return len(p), nil
	}
	w.h.log.Warn(line)
	return len(p), nil
}

type handshakeError string

func (e handshakeError) Error() string { return string(e) }
