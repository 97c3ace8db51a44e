package service

import (
	"context"
	"net"

	"golang.org/x/time/rate"

	"govx/exchange"
	"govx/exchange/audit"
)

// Requests refused before the policy is asked: unparseable, unauthenticated, over a
// limit. Each is still recorded: no request goes unaudited.

// Rejected audits a request the edge could not even parse (malformed JSON, a bad
// descriptor) or authenticate, and returns err: no request goes unrecorded.
func (s *Service) Rejected(ctx context.Context, c Caller, action exchange.Action, dataset string, err error) error {
	return s.auditRejected(ctx, c, action, dataset, err)
}

// Unauthenticated records a request that failed authentication and returns err. Each
// client address gets 5 audited failures a second (burst 20), and all addresses together
// 50 a second (burst 200); beyond that failures are
// counted (govx_auth_failures_total{audited="no"}) and logged in summary instead, so
// that a flood of bad credentials cannot fill the audit spool's disk and with it stop
// every department's access. An audited failure's event is bounded to
// audit.MaxUnauthenticatedEventBytes, whatever the request carried.
func (s *Service) Unauthenticated(ctx context.Context, c Caller, action exchange.Action, dataset string, err error) error {
	host, _, splitErr := net.SplitHostPort(c.ClientAddr)
	if splitErr != nil {
		host = c.ClientAddr
	}
	s.failMu.Lock()
	l, ok := s.failLimiters[host]
	if !ok {
		if len(s.failLimiters) > 10000 {
			clear(s.failLimiters) // bounded: a spread of addresses resets the budgets
		}
		l = rate.NewLimiter(5, 20)
		s.failLimiters[host] = l
	}
	// Per address, and for all addresses together: a flood from many addresses (an IPv6
	// range, a botnet) is bounded too — at most 50 audited failures a second in all,
	// 50 × the event cap ≈ 100 KB/s, far below what the spool's free-space reserve
	// absorbs before anyone notices on govx_auth_failures_total{audited="no"}.
	allow := l.Allow() && s.failAll.Allow()
	if !allow {
		s.failDropped++
		if s.failDropped%1000 == 1 {
			s.log.Warn("failed authentications over the audit budget; counted, not audited one by one",
				"client", host, "not_audited_total", s.failDropped)
		}
	}
	s.failMu.Unlock()
	if !allow {
		s.authFailures.WithLabelValues("no").Inc()
		return err
	}
	s.authFailures.WithLabelValues("yes").Inc()
	return s.auditRejectedLimited(ctx, c, action, dataset, err, audit.UnauthenticatedLimits)
}

// HandshakeRefused counts a TLS handshake refused for its client certificate (another
// CA's, expired, not a client certificate, revoked) on listener ("flight", "https"):
// no request was read, so there is nothing to audit, but govx_auth_failures_total
// {audited="no"} counts it and the log says so, at most a few lines a second so that a
// flood of handshakes cannot flood the log.
func (s *Service) HandshakeRefused(listener, remote string, err error) {
	s.authFailures.WithLabelValues("no").Inc()
	if s.handshakeLog.Allow() {
		s.log.Warn("TLS handshake refused: client certificate not accepted", "listener", listener, "client", remote, "err", err)
	}
}

// auditRejected records a request refused before the policy was asked (rate limit,
// unknown dataset, malformed input). The caller's error is returned either way; a
// failure to audit makes it an audit_unavailable error instead.
func (s *Service) auditRejected(ctx context.Context, c Caller, action exchange.Action, dataset string, refused error) error {
	return s.auditRejectedLimited(ctx, c, action, dataset, refused, audit.DefaultLimits)
}

func (s *Service) auditRejectedLimited(ctx context.Context, c Caller, action exchange.Action, dataset string, refused error, lim audit.Limits) error {
	req := exchange.Request{Subject: c.Subject, Action: action, Dataset: dataset}
	if err := s.auditDecisionLimited(ctx, c, newRequestID(), req, exchange.Decision{}, nil, refused, lim); err != nil {
		return err
	}
	return refused
}
