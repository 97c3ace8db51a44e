package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Checkpoint is a signed statement "the chain of Instance had, at Time, the event Seq
// with hash Hash". Checkpoints are appended, one JSON object a line, to a file kept
// apart from ClickHouse: whoever can rewrite the table cannot rewrite what was signed.
type Checkpoint struct {
	Instance string    `json:"instance"`
	Seq      uint64    `json:"seq"`
	Hash     string    `json:"hash"`
	Time     time.Time `json:"time"`
	Sig      string    `json:"sig"` // base64 Ed25519 signature of message()
}

// headMessage is the signed text of a statement about a chain head (a checkpoint, a
// shipped marker): the prefix keeps a signature of one kind from ever being valid for
// another signed with the same key.
func headMessage(prefix, instance string, seq uint64, hash string, t time.Time) []byte {
	return []byte(prefix + "\n" + instance + "\n" + strconv.FormatUint(seq, 10) +
		"\n" + hash + "\n" + strconv.FormatInt(t.UnixMilli(), 10) + "\n")
}

func signHead(key ed25519.PrivateKey, msg []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
}

func validHead(pub ed25519.PublicKey, msg []byte, sig64 string) bool {
	sig, err := base64.StdEncoding.DecodeString(sig64)
	return err == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
}

func (c *Checkpoint) message() []byte {
	return headMessage("govx-audit-checkpoint-v1", c.Instance, c.Seq, c.Hash, c.Time)
}

// Sign sets Sig.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) { c.Sig = signHead(key, c.message()) }

// Valid reports whether Sig is pub's signature of the checkpoint.
func (c *Checkpoint) Valid(pub ed25519.PublicKey) bool { return validHead(pub, c.message(), c.Sig) }

func appendCheckpoint(path string, c *Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadCheckpoints reads a checkpoint file. A torn last line (a crash while appending)
// is ignored; any other unreadable line is an error.
func ReadCheckpoints(path string) ([]Checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read checkpoints: %w", err)
	}
	var out []Checkpoint
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			if !bytes.HasSuffix(data, []byte("\n")) && line == bytes.Count(data, []byte("\n"))+1 {
				break
			}
			return nil, fmt.Errorf("audit: %s line %d is not a checkpoint: %w", path, line, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// lastValidCheckpoint returns the checkpoint of instance with the highest seq whose
// signature pub verifies, nil when there is none (or no file yet).
func lastValidCheckpoint(path, instance string, pub ed25519.PublicKey) (*Checkpoint, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	cps, err := ReadCheckpoints(path)
	if err != nil {
		return nil, err
	}
	var last *Checkpoint
	for i := range cps {
		c := &cps[i]
		if c.Instance == instance && c.Valid(pub) && (last == nil || c.Seq >= last.Seq) {
			last = c
		}
	}
	return last, nil
}

func lastCheckpoint(path, instance string) (uint64, bool, error) {
	cps, err := ReadCheckpoints(path)
	if err != nil {
		return 0, false, err
	}
	var last uint64
	ok := false
	for _, c := range cps {
		if c.Instance == instance && c.Seq >= last {
			last, ok = c.Seq, true
		}
	}
	return last, ok, nil
}

// GenerateKey writes a new Ed25519 signing key to privPath (PKCS #8 PEM, mode 0600) and
// its public key to pubPath (PKIX PEM). It refuses to overwrite an existing key: a lost
// key makes old checkpoints unverifiable.
func GenerateKey(privPath, pubPath string) error {
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("audit: %s exists; move it aside first (checkpoints signed with it need its public key to verify)", p)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	for _, p := range []string{privPath, pubPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), 0o644)
}

// LoadPrivateKey reads a key written by GenerateKey.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read signing key: %w (create one with `govx audit keygen`)", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit: %s is not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit: %s is not an Ed25519 key", path)
	}
	return ek, nil
}

// LoadPublicKey reads a public key written by GenerateKey.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("audit: %s is not a PEM public key", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("audit: " + path + " is not an Ed25519 public key")
	}
	return ek, nil
}
