package sign

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
)

// The DER encodings of ed25519 keys are fixed (RFC 8410): hotpatch writes
// and reads them directly instead of through crypto/x509, which would add
// about 2 ms to the start of every hotpatch process (it drags in net, RSA,
// ECDSA and their initialisers) for two constant prefixes.

// algEd25519 is the AlgorithmIdentifier SEQUENCE { OID 1.3.101.112 } with no
// parameters (RFC 8410 section 3).
var algEd25519 = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}

// spkiPrefix precedes the 32-byte key in a SubjectPublicKeyInfo: SEQUENCE
// (42 bytes) { algEd25519, BIT STRING (33 bytes, 0 unused bits) }.
var spkiPrefix = append(append([]byte{0x30, 0x2a}, algEd25519...), 0x03, 0x21, 0x00)

// pkcs8Prefix precedes the 32-byte seed in a OneAsymmetricKey version 1
// (RFC 5958) as OpenSSL writes it: SEQUENCE (46 bytes) { INTEGER 0,
// algEd25519, OCTET STRING { OCTET STRING (32 bytes) } }.
var pkcs8Prefix = append(append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00}, algEd25519...), 0x04, 0x22, 0x04, 0x20)

func marshalPublicKey(pub ed25519.PublicKey) []byte {
	return append(bytes.Clone(spkiPrefix), pub...)
}

func marshalPrivateKey(priv ed25519.PrivateKey) []byte {
	return append(bytes.Clone(pkcs8Prefix), priv.Seed()...)
}

func parsePublicKey(der []byte) (ed25519.PublicKey, error) {
	if len(der) != len(spkiPrefix)+ed25519.PublicKeySize || !bytes.HasPrefix(der, spkiPrefix) {
		return nil, errors.New("not an ed25519 SubjectPublicKeyInfo (RFC 8410)")
	}
	return ed25519.PublicKey(bytes.Clone(der[len(spkiPrefix):])), nil
}

// parsePrivateKey reads a OneAsymmetricKey of version 1, or of version 2
// (which may carry attributes and the public key after the seed; when it
// carries the public key, it must match the seed).
func parsePrivateKey(der []byte) (ed25519.PrivateKey, error) {
	bad := errors.New("not an ed25519 PKCS #8 private key (RFC 8410)")
	body, rest, ok := derElement(der, 0x30)
	if !ok || len(rest) != 0 {
		return nil, bad
	}
	version, body, ok := derElement(body, 0x02)
	if !ok || len(version) != 1 || version[0] > 1 {
		return nil, bad
	}
	if !bytes.HasPrefix(body, algEd25519) {
		return nil, bad
	}
	body = body[len(algEd25519):]
	outer, body, ok := derElement(body, 0x04)
	if !ok {
		return nil, bad
	}
	seed, tail, ok := derElement(outer, 0x04)
	if !ok || len(tail) != 0 || len(seed) != ed25519.SeedSize {
		return nil, bad
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if version[0] == 0 && len(body) != 0 {
		return nil, bad
	}
	for len(body) > 0 {
		// Version 2: [0] attributes, [1] publicKey (BIT STRING contents).
		tag := body[0]
		var v []byte
		if v, body, ok = derElement(body, tag); !ok {
			return nil, bad
		}
		if tag == 0x81 {
			if len(v) != 1+ed25519.PublicKeySize || v[0] != 0 || !bytes.Equal(v[1:], priv.Public().(ed25519.PublicKey)) {
				return nil, fmt.Errorf("%w: its public key does not match its seed", bad)
			}
		}
	}
	return priv, nil
}

// derElement splits off one DER element with the given tag: its contents and
// what follows it. Only the definite short and long (up to 2 length bytes)
// forms occur in keys.
func derElement(b []byte, tag byte) (contents, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, hdr := int(b[1]), 2
	switch {
	case n < 0x80:
	case n == 0x81 && len(b) >= 3 && b[2] >= 0x80:
		n, hdr = int(b[2]), 3
	case n == 0x82 && len(b) >= 4 && b[2] != 0:
		n, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		return nil, nil, false
	}
	if len(b)-hdr < n {
		return nil, nil, false
	}
	return b[hdr : hdr+n], b[hdr+n:], true
}
