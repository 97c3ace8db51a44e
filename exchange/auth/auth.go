// Package auth authenticates the callers of the exchange and signs what the exchange
// hands out. A caller is a department system holding a bearer token (256 random bits,
// stored by the exchange only as a SHA-256 hash, revocable without a restart) or a
// client certificate; both yield the same exchange.Subject. Tickets and cursors are
// signed with the exchange's secret so they can be neither forged nor moved to another
// caller, and stay valid across restarts and replicas that share the secret.
//
// The exchange's edges (Flight, HTTP) and the `govx token` command import it.
package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"govx/exchange"
)

// ErrUnauthenticated is returned for a missing, unknown or revoked credential. Its
// message never echoes the credential.
var ErrUnauthenticated = &exchange.Error{Kind: exchange.Unauthenticated, Code: "unauthenticated",
	Message: "missing, unknown or revoked credential: send `authorization: Bearer <token>` issued by `govx token issue`, or a client certificate"}

var (
	deptPattern   = regexp.MustCompile(`^[a-z][a-z0-9]*(-[0-9a-z]+)*$`)
	systemPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// ParseSubject parses "DEPT" or "DEPT/SYSTEM" as the CLI's --as flag and certificate
// common names write a subject.
func ParseSubject(s string) (exchange.Subject, error) {
	dept, system, slash := strings.Cut(s, "/")
	if slash && system == "" {
		return exchange.Subject{}, fmt.Errorf("subject %q: a system name must follow the '/'", s)
	}
	if !deptPattern.MatchString(dept) {
		return exchange.Subject{}, fmt.Errorf("department %q: use a department code such as mz-3301", dept)
	}
	if system != "" && !systemPattern.MatchString(system) {
		return exchange.Subject{}, fmt.Errorf("system %q: use lower-case letters, digits, '.', '_' or '-'", system)
	}
	return exchange.Subject{Department: dept, System: system}, nil
}

// Subject authenticates a request, the same way for Flight and HTTP: a client
// certificate the TLS layer verified (verified chains, leaf first) names the subject;
// without one, the bearer token in authorization ("Bearer <token>") does. Neither is
// ErrUnauthenticated: there is no anonymous access.
func (t *Tokens) Subject(authorization string, verified [][]*x509.Certificate) (exchange.Subject, error) {
	if len(verified) > 0 && len(verified[0]) > 0 {
		if t.certCheck != nil {
			if err := t.certCheck(verified); err != nil {
				return exchange.Subject{}, &exchange.Error{Kind: exchange.Unauthenticated, Code: "unauthenticated",
					Message: "client certificate refused: " + err.Error()}
			}
		}
		subj, err := CertSubject(verified[0][0])
		if err != nil {
			return exchange.Subject{}, &exchange.Error{Kind: exchange.Unauthenticated, Code: "unauthenticated", Message: err.Error()}
		}
		return subj, nil
	}
	// The scheme is case-insensitive (RFC 7235): "bearer" is Bearer too.
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return exchange.Subject{}, ErrUnauthenticated
	}
	return t.Authenticate(strings.TrimSpace(token))
}

// CheckCertificates makes every call with a client certificate pass check too, beyond
// the TLS handshake's verification: the exchange's revocation list, so that a
// certificate revoked while its connection stays open (gRPC keeps one for hours) is
// refused at its next call, not only at its next connection. Call it before serving.
func (t *Tokens) CheckCertificates(check func(verified [][]*x509.Certificate) error) {
	t.certCheck = check
}

// CertSubject maps a verified client certificate to a subject: the certificate's
// common name is "DEPT/SYSTEM" (or "DEPT"). The TLS layer has already verified the chain
// against the exchange's client CA; this only reads the identity. The organization (O)
// and organizational unit (OU), when present, must name the same department and system
// (`govx pki issue client` writes them so): a certificate saying two things about who
// holds it is refused rather than read one way.
func CertSubject(cert *x509.Certificate) (exchange.Subject, error) {
	if cert == nil {
		return exchange.Subject{}, errors.New("no client certificate")
	}
	subj, err := ParseSubject(cert.Subject.CommonName)
	if err != nil {
		return exchange.Subject{}, fmt.Errorf("client certificate common name: %w", err)
	}
	for _, f := range []struct {
		name, want string
		got        []string
	}{{"organization (O)", subj.Department, cert.Subject.Organization}, {"organizational unit (OU)", subj.System, cert.Subject.OrganizationalUnit}} {
		for _, v := range f.got {
			if v != f.want {
				return exchange.Subject{}, fmt.Errorf("client certificate %s %q does not match its common name %q", f.name, v, cert.Subject.CommonName)
			}
		}
	}
	return subj, nil
}
