package service

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"

	"govx/exchange"
	"govx/policies"
	"govx/schemas/license"
)

// Licence verification (证照核验): a department presents a licence number and the
// content digest printed on the holder's copy; the answer says whether the copy is of a
// licence in force, and whether the issuer's signature over the register's licence
// holds — never any of the licence's values. It is a verify of license.certificate
// through the same path as every verify (decision, key budget, row scope, audit), asked
// for the columns it compares and reports on: content_digest, status, valid_until.

// licenceDataset is the e-licence register.
const licenceDataset = "license.certificate"

// licenceVerifyColumns are the columns a licence verification compares or reports on;
// the policy must grant them for verify.
var licenceVerifyColumns = []string{"content_digest", "status", "valid_until"}

// WithKeyring sets where the issuers' public keys come from; by default they are the
// deciding policy's issuers data (policies.Bundle.Keyring), or the shipped one's for a
// decider without policy data. Tests that sign licences with keys of their own use it.
func WithKeyring(keys func() *license.Keyring) Option { return func(s *Service) { s.keys = keys } }

// ParseLicenceVerify decodes a licence verification body strictly and reads its
// digest as a person presents it (either case, full-width characters folded).
func ParseLicenceVerify(data []byte) (exchange.LicenceVerifyCmd, error) {
	var c exchange.LicenceVerifyCmd
	if err := decodeStrict(data, &c); err != nil {
		return c, err
	}
	d, err := license.ParseDigest(c.Digest)
	if err != nil {
		return c, invalid("bad_digest", `digest must be the licence's SHA-256 content digest as printed on the copy: 64 hexadecimal characters, e.g. {"licence_no":"…","digest":"9f86d0…","purpose":"…"}`)
	}
	c.Digest = d
	return c, nil
}

func loadEmbedded() { embeddedBundle, _ = policies.Embedded() }

// keyring returns the issuers' public keys now in force.
func (s *Service) keyring() *license.Keyring {
	if s.keys != nil {
		return s.keys()
	}
	if b, ok := s.policy.(bundled); ok {
		if bb := b.Bundle(); bb != nil {
			return bb.Keyring()
		}
	}
	embeddedOnce.Do(loadEmbedded)
	if embeddedBundle != nil {
		return embeddedBundle.Keyring()
	}
	return nil
}

// VerifyLicence checks a presented copy of a licence against the register. A licence
// number outside the caller's row scope answers not found, exactly as a missing one.
func (s *Service) VerifyLicence(ctx context.Context, c Caller, cmd exchange.LicenceVerifyCmd) (*exchange.LicenceVerdict, error) {
	key, _ := json.Marshal(cmd.LicenceNo)
	req := exchange.Request{Subject: c.Subject, Action: exchange.ActionVerify, Dataset: licenceDataset,
		Columns: licenceVerifyColumns, Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Time: s.now()}
	g, _, rec, err := s.keyed(ctx, c, req, key)
	if err != nil {
		return nil, err
	}
	stored, _ := rec["content_digest"].(string)
	v := &exchange.LicenceVerdict{RequestID: g.RequestID, LicenceNo: g.Keys[0], Result: exchange.LicenceNotValid,
		DigestMatch: subtle.ConstantTimeCompare([]byte(cmd.Digest), []byte(stored)) == 1,
		Signature:   signature(s.keyring(), rec)}
	if v.DigestMatch && v.Signature == exchange.SignatureHolds {
		status, _ := rec["status"].(string)
		until, _ := rec["valid_until"].(string)
		switch st := license.EffectiveStatus(status, until, s.now()); st {
		case license.StatusValid, license.StatusSuspended, license.StatusRevoked, license.StatusExpired:
			v.Result = st
		}
	}
	return v, nil
}

// signature says whether the issuer's signature over the register's licence holds.
func signature(keys *license.Keyring, rec map[string]any) string {
	l, err := license.FromRecord(rec)
	if err == nil {
		err = keys.Verify(l)
	}
	switch {
	case err == nil:
		return exchange.SignatureHolds
	case errors.Is(err, license.ErrUnknownIssuer):
		return exchange.SignatureUnknownIssuer
	case errors.Is(err, license.ErrBadSignature):
		return exchange.SignatureDoesNotHold
	}
	return exchange.SignatureMalformed
}
