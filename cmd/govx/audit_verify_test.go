package main

import (
	"crypto/ed25519"
	"path/filepath"
	"strings"
	"testing"

	"govx/exchange/audit"
)

// replicaCheckpoints opens and closes a spool of instance signing with a key of its
// own, and returns its checkpoint file and public key file.
func replicaCheckpoints(t *testing.T, instance string) (string, string) {
	t.Helper()
	d := t.TempDir()
	key, pub, ck := filepath.Join(d, "k"), filepath.Join(d, "k.pub"), filepath.Join(d, "checkpoints")
	if err := audit.GenerateKey(key, pub); err != nil {
		t.Fatal(err)
	}
	priv, err := audit.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.OpenSpool(filepath.Join(d, "spool"), audit.WithInstance(instance), audit.WithCheckpoints(priv, ck, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return ck, pub
}

// TestVerifyKeys: each replica's checkpoint file is checked with the key given in its
// place, one key serves all, and a count that pairs neither way is refused.
func TestVerifyKeys(t *testing.T) {
	ckA, pubA := replicaCheckpoints(t, "exchange-a")
	ckB, pubB := replicaCheckpoints(t, "exchange-b")
	var opt audit.VerifyOptions
	if err := verifyKeys(&opt, []string{ckA, ckB}, []string{pubA, pubB}); err != nil {
		t.Fatal(err)
	}
	ka, _ := audit.LoadPublicKey(pubA)
	kb, _ := audit.LoadPublicKey(pubB)
	if !opt.CheckpointsGiven || len(opt.Checkpoints) < 2 || !opt.Keys["exchange-a"].Equal(ka) || !opt.Keys["exchange-b"].Equal(kb) {
		t.Fatalf("two replicas: checkpoints %d, keys %v", len(opt.Checkpoints), opt.Keys)
	}
	opt = audit.VerifyOptions{}
	if err := verifyKeys(&opt, []string{ckA, ckB}, []string{pubA}); err != nil || opt.Keys != nil || !ed25519.PublicKey(opt.PublicKey).Equal(ka) {
		t.Fatalf("one key for all: err %v, keys %v", err, opt.Keys)
	}
	err := verifyKeys(&audit.VerifyOptions{}, []string{ckA, ckB, ckA}, []string{pubA, pubB})
	if err == nil || !strings.Contains(err.Error(), "one per --checkpoints") {
		t.Fatalf("three files, two keys: %v", err)
	}
}
