package license_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"govx/schemas/license"
)

// key derives a test key from a name, so failures reproduce.
func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("license test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func sample() license.Licence {
	return license.Licence{
		No: "YYZZ33010620190000123", Type: "business_licence",
		HolderUSCC: "91330106MA2AXXXX0B", HolderName: "杭州某某科技有限公司",
		Issuer: "scjg-3301", IssuerRegion: "330100",
		IssuedOn: "2019-05-20", ValidUntil: "2039-05-19",
		ContentDigest: license.ContentDigest([]byte("营业执照 杭州某某科技有限公司")),
	}
}

func signed(t *testing.T, k ed25519.PrivateKey, l license.Licence) license.Licence {
	t.Helper()
	sig, err := license.Sign(k, l)
	if err != nil {
		t.Fatal(err)
	}
	l.Signature = sig
	return l
}

func TestSignVerify(t *testing.T) {
	k := key("scjg-3301")
	l := signed(t, k, sample())
	if len(l.Signature) != 128 || strings.ToLower(l.Signature) != l.Signature {
		t.Fatalf("signature %q is not 64 bytes in lower-case hex", l.Signature)
	}
	if err := license.Verify(k.Public().(ed25519.PublicKey), l); err != nil {
		t.Fatalf("own signature does not verify: %v", err)
	}
	again := signed(t, k, sample())
	if again.Signature != l.Signature {
		t.Error("Ed25519 signing is deterministic; two signatures of one licence differ")
	}
}

// TestTampered: any change to a signed field, or a key other than the issuer's, fails
// with ErrBadSignature; a signature that is not hex is malformed.
func TestTampered(t *testing.T) {
	k := key("scjg-3301")
	pub := k.Public().(ed25519.PublicKey)
	good := signed(t, k, sample())
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'a' {
			b[0] = 'b'
		} else {
			b[0] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name   string
		change func(*license.Licence)
		pub    ed25519.PublicKey
		want   error
	}{
		{"tampered digest", func(l *license.Licence) { l.ContentDigest = flip(l.ContentDigest) }, pub, license.ErrBadSignature},
		{"digest of other content", func(l *license.Licence) { l.ContentDigest = license.ContentDigest([]byte("伪造")) }, pub, license.ErrBadSignature},
		{"term extended", func(l *license.Licence) { l.ValidUntil = "2049-05-19" }, pub, license.ErrBadSignature},
		{"term removed", func(l *license.Licence) { l.ValidUntil = "" }, pub, license.ErrBadSignature},
		{"holder renamed", func(l *license.Licence) { l.HolderName = "杭州另一科技有限公司" }, pub, license.ErrBadSignature},
		{"holder moved to a field of the other kind", func(l *license.Licence) { l.HolderIDNumber, l.HolderUSCC = "33010619900307123X", "" }, pub, license.ErrBadSignature},
		{"type changed", func(l *license.Licence) { l.Type = "food_business_permit" }, pub, license.ErrBadSignature},
		{"signature altered", func(l *license.Licence) { l.Signature = flip(l.Signature) }, pub, license.ErrBadSignature},
		{"wrong issuer key", func(*license.Licence) {}, key("scjg-3302").Public().(ed25519.PublicKey), license.ErrBadSignature},
		{"signature not hex", func(l *license.Licence) { l.Signature = strings.Repeat("zz", 64) }, pub, license.ErrMalformed},
		{"no signature", func(l *license.Licence) { l.Signature = "" }, pub, license.ErrMalformed},
		{"short key", func(*license.Licence) {}, pub[:16], license.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := good
			tt.change(&l)
			if err := license.Verify(tt.pub, l); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestCanonicalForms: a signature made over source values (spaces, full-width digits, a
// lower-case x, an upper-case digest) holds over the normalized record the connectors
// publish, and the other way round.
func TestCanonicalForms(t *testing.T) {
	k := key("mz-3301")
	src := license.Licence{
		No: "J330100-2018-000123", Type: "marriage_certificate",
		HolderIDNumber: "33010619900307123x", HolderName: " 张三 ",
		Issuer: "mz-3301", IssuerRegion: "３３０１００",
		IssuedOn: "2018-10-01", ContentDigest: strings.ToUpper(license.ContentDigest([]byte("结婚证"))),
	}
	l := signed(t, k, src)
	canon := license.Licence{
		No: "J330100-2018-000123", Type: "marriage_certificate",
		HolderIDNumber: "33010619900307123X", HolderName: "张三",
		Issuer: "mz-3301", IssuerRegion: "330100",
		IssuedOn: "2018-10-01", ContentDigest: license.ContentDigest([]byte("结婚证")),
		Signature: strings.ToUpper(l.Signature),
	}
	if err := license.Verify(k.Public().(ed25519.PublicKey), canon); err != nil {
		t.Fatalf("the canonical record does not verify: %v", err)
	}
}

func TestMessageRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*license.Licence)
		want   string
	}{
		{"a line break could forge a line", func(l *license.Licence) { l.HolderName = "甲\nissuer=scjg-3302" }, "holder_name holds a control character"},
		{"two holders", func(l *license.Licence) { l.HolderIDNumber = "33010619900307123X" }, "exactly one of holder_uscc and holder_id_number"},
		{"no holder", func(l *license.Licence) { l.HolderUSCC = "" }, "exactly one of"},
		{"no number", func(l *license.Licence) { l.No = " " }, "licence_no is missing"},
		{"bad issue date", func(l *license.Licence) { l.IssuedOn = "2019-02-30" }, `issued_on "2019-02-30" is not a date`},
		{"bad term", func(l *license.Licence) { l.ValidUntil = "长期" }, "valid_until"},
		{"short digest", func(l *license.Licence) { l.ContentDigest = "abcd" }, "content_digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := sample()
			tt.change(&l)
			_, err := license.Message(l)
			if !errors.Is(err, license.ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Message = %v, want ErrMalformed saying %q", err, tt.want)
			}
			if _, err := license.Sign(key("x"), l); !errors.Is(err, license.ErrMalformed) {
				t.Fatalf("Sign = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestKeyring(t *testing.T) {
	k1, k2 := key("scjg-3301"), key("mz-3301")
	ring, err := license.NewKeyring(map[string]ed25519.PublicKey{
		"scjg-3301": k1.Public().(ed25519.PublicKey), "mz-3301": k2.Public().(ed25519.PublicKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ring.Issuers(), ","); got != "mz-3301,scjg-3301" {
		t.Errorf("Issuers = %s", got)
	}
	l := signed(t, k1, sample())
	if err := ring.Verify(l); err != nil {
		t.Fatalf("keyring verify: %v", err)
	}
	// Signed by another issuer's key, claiming to be scjg-3301.
	if err := ring.Verify(signed(t, k2, sample())); !errors.Is(err, license.ErrBadSignature) {
		t.Fatalf("signed by mz-3301 as scjg-3301: %v", err)
	}
	l.Issuer = "scjg-9999"
	if err := ring.Verify(l); !errors.Is(err, license.ErrUnknownIssuer) {
		t.Fatalf("unknown issuer: %v", err)
	}
	if _, err := license.NewKeyring(map[string]ed25519.PublicKey{"x": make([]byte, 31)}); err == nil {
		t.Fatal("a 31-byte key accepted")
	}
	var none *license.Keyring
	if err := none.Verify(l); !errors.Is(err, license.ErrUnknownIssuer) {
		t.Fatalf("nil keyring: %v", err)
	}
}

func TestPublicKeyText(t *testing.T) {
	pub := key("zj-3301").Public().(ed25519.PublicKey)
	s := license.FormatPublicKey(pub)
	back, err := license.ParsePublicKey(s)
	if err != nil || !back.Equal(pub) {
		t.Fatalf("round trip of %s: %v, %v", s, back, err)
	}
	for _, bad := range []string{
		strings.TrimPrefix(s, "ed25519:"),          // no algorithm
		"rsa:" + strings.TrimPrefix(s, "ed25519:"), // another algorithm
		"ed25519:not base64!",
		"ed25519:" + "AAAA", // 3 bytes
	} {
		if _, err := license.ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
}

func TestParseDigest(t *testing.T) {
	d := license.ContentDigest([]byte("x"))
	for _, in := range []string{d, strings.ToUpper(d), "  " + d + "\t"} {
		if got, err := license.ParseDigest(in); err != nil || got != d {
			t.Errorf("ParseDigest(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", d[:63], d + "0", strings.Replace(d, d[:1], "g", 1)} {
		if _, err := license.ParseDigest(in); !errors.Is(err, license.ErrMalformed) {
			t.Errorf("ParseDigest(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

func TestEffectiveStatus(t *testing.T) {
	// 2026-05-19 ends at 2026-05-19T16:00:00Z (midnight, China Standard Time).
	end := time.Date(2026, 5, 19, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		status, until string
		at            time.Time
		want          string
	}{
		{"valid", "2026-05-19", end.Add(-time.Second), "valid"},
		{"valid", "2026-05-19", end, "expired"},
		{"valid", "", end.AddDate(50, 0, 0), "valid"},
		{"revoked", "2026-05-19", end.AddDate(1, 0, 0), "revoked"},
		{"suspended", "2030-01-01", end, "suspended"},
		{"expired", "2030-01-01", end, "expired"},
	}
	for _, tt := range tests {
		if got := license.EffectiveStatus(tt.status, tt.until, tt.at); got != tt.want {
			t.Errorf("EffectiveStatus(%s, %s, %v) = %s, want %s", tt.status, tt.until, tt.at, got, tt.want)
		}
	}
}

func TestFromRecord(t *testing.T) {
	rec := map[string]any{
		"licence_no": "YYZZ33010620190000123", "licence_type": "business_licence",
		"holder_uscc": "91330106MA2AXXXX0B", "holder_id_number": nil, "holder_name": "杭州某某科技有限公司",
		"issuer": "scjg-3301", "issuer_region": "330100", "issued_on": "2019-05-20", "valid_until": "2039-05-19",
		"status": "valid", "content_digest": sample().ContentDigest, "issuer_signature": "ab",
		"updated_at": "2025-01-01T00:00:00Z",
	}
	l, err := license.FromRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	want.Signature = "ab"
	if l != want {
		t.Fatalf("FromRecord = %+v, want %+v", l, want)
	}
	rec["issued_on"] = 20190520.0
	if _, err := license.FromRecord(rec); !errors.Is(err, license.ErrMalformed) || !strings.Contains(err.Error(), "issued_on") {
		t.Fatalf("a number for a date: %v", err)
	}
}

// FuzzMessage: two licences with the same message have the same fields once
// normalized, so no change to a signed field keeps a signature valid.
func FuzzMessage(f *testing.F) {
	f.Add("张三", "", "2018-10-01", "")
	f.Add("张=三", "x", "2018-10-01", "2028-10-01")
	f.Fuzz(func(t *testing.T, name, no2, issued, until string) {
		a := sample()
		a.HolderName, a.IssuedOn, a.ValidUntil = name, issued, until
		b := a
		b.No += no2
		ma, errA := license.Message(a)
		mb, errB := license.Message(b)
		if errA != nil || errB != nil {
			return
		}
		if (string(ma) == string(mb)) != (strings.TrimSpace(no2) == "") {
			t.Fatalf("licence numbers %q and %q give equal messages: %v", a.No, b.No, string(ma) == string(mb))
		}
		if strings.Count(string(ma), "\n") != 11 {
			t.Fatalf("message has %d lines, want 11:\n%s", strings.Count(string(ma), "\n"), ma)
		}
	})
}

func ExampleMessage() {
	msg, err := license.Message(license.Licence{
		No: "J330100-2018-000123", Type: "marriage_certificate",
		HolderIDNumber: "330106199003071233", HolderName: "张三",
		Issuer: "mz-3301", IssuerRegion: "330100", IssuedOn: "2018-10-01",
		ContentDigest: license.ContentDigest([]byte("结婚证 J330100-2018-000123")),
	})
	if err != nil {
		panic(err)
	}
	fmt.Print(string(msg))
	// Output:
	// govx-licence-v1
	// licence_no=J330100-2018-000123
	// licence_type=marriage_certificate
	// holder_uscc=
	// holder_id_number=330106199003071233
	// holder_name=张三
	// issuer=mz-3301
	// issuer_region=330100
	// issued_on=2018-10-01
	// valid_until=
	// content_digest=a70ff8549e054169e014eb5eb142f585d1a0d21e1f9493bbbbc2f2b09f9fdc24
}
