package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"testing"
)

// TestOpenSSLKeys reads keys made by `openssl genpkey -algorithm ed25519`
// and `openssl pkey -pubout` (testdata/openssl.key*): the pair must match.
func TestOpenSSLKeys(t *testing.T) {
	priv, err := LoadPrivateKey("testdata/openssl.key")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey("testdata/openssl.key.pub")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatalf("public key does not match the private key")
	}
}

// TestDERMatchesX509 checks the fixed encodings against crypto/x509 both
// ways.
func TestDERMatchesX509(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	wantPub, _ := x509.MarshalPKIXPublicKey(pub)
	wantPriv, _ := x509.MarshalPKCS8PrivateKey(priv)
	if got := marshalPublicKey(pub); !bytes.Equal(got, wantPub) {
		t.Errorf("public key DER\n got %x\nwant %x", got, wantPub)
	}
	if got := marshalPrivateKey(priv); !bytes.Equal(got, wantPriv) {
		t.Errorf("private key DER\n got %x\nwant %x", got, wantPriv)
	}
	if p, err := parsePublicKey(wantPub); err != nil || !p.Equal(pub) {
		t.Errorf("parsePublicKey: %v", err)
	}
	if p, err := parsePrivateKey(wantPriv); err != nil || !p.Equal(priv) {
		t.Errorf("parsePrivateKey: %v", err)
	}
}

func TestParsePrivateKeyForms(t *testing.T) {
	// RFC 8410 section 10.3: a version 2 key with an attribute and the
	// public key.
	rfcV2, _ := hex.DecodeString("3072020101300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842a01f301d060a2a864886f70d01090914310f0c0d437572646c652043686169727381210019bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1")
	v1 := marshalPrivateKey(ed25519.NewKeyFromSeed(make([]byte, 32)))
	wrongPub := bytes.Clone(rfcV2)
	wrongPub[len(wrongPub)-1] ^= 1
	for _, tc := range []struct {
		name string
		der  []byte
		ok   bool
	}{
		{"v1", v1, true},
		{"rfc8410 v2 with public key", rfcV2, true},
		{"v2 public key mismatch", wrongPub, false},
		{"v1 with trailing field", append(append([]byte{0x30, 0x31}, v1[2:]...), 0x81, 0x01, 0x00), false},
		{"truncated", v1[:len(v1)-1], false},
		{"trailing garbage", append(bytes.Clone(v1), 0), false},
		{"other algorithm", bytes.Replace(bytes.Clone(v1), []byte{0x2b, 0x65, 0x70}, []byte{0x2b, 0x65, 0x71}, 1), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePrivateKey(tc.der)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzParseKeys: the parsers never panic, and whatever they accept
// crypto/x509 accepts as the same key.
func FuzzParseKeys(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	f.Add(marshalPublicKey(pub))
	f.Add(marshalPrivateKey(priv))
	f.Add([]byte{0x30, 0x82, 0x00, 0x05})
	f.Fuzz(func(t *testing.T, der []byte) {
		if p, err := parsePublicKey(der); err == nil {
			k, xerr := x509.ParsePKIXPublicKey(der)
			if xerr != nil || !p.Equal(k) {
				t.Fatalf("public key accepted here, not by x509: %v", xerr)
			}
		}
		if p, err := parsePrivateKey(der); err == nil {
			k, xerr := x509.ParsePKCS8PrivateKey(der)
			if xerr != nil {
				t.Logf("private key accepted here, not by x509 (a version 2 form x509 refuses?): %v", xerr)
			} else if !p.Equal(k) {
				t.Fatalf("private key differs from x509's")
			}
		}
	})
}
