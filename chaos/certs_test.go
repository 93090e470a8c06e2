package chaos

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// writeCertificates writes, into dir (PEM, PKCS#8 keys; read by RabbitMQ, FerretDB, Go):
//
//	ca.pem                    the test CA (trusted by the servers and the good clients)
//	other-ca.pem              an unrelated CA ("wrong CA")
//	server.pem/.key           localhost + 127.0.0.1, signed by ca
//	server-expired.pem/.key   same names, expired an hour ago, signed by ca
//	client.pem/.key           client certificate signed by ca; client-combined.pem = cert + key
//	client-expired.pem/.key   expired client certificate; client-expired-combined.pem
func writeCertificates(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_ = os.Chmod(dir, 0o755)
	now := time.Now()
	ca, caKey, err := newCert(dir, "ca", nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "ccworker chaos CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
	})
	if err != nil {
		return err
	}
	if _, _, err := newCert(dir, "other-ca", nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "some other CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
	}); err != nil {
		return err
	}
	server := func(notBefore, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: notBefore, NotAfter: notAfter,
		}
	}
	client := func(notBefore, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: "ccworker-chaos-client"},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: notBefore, NotAfter: notAfter,
		}
	}
	steps := []struct {
		name string
		tmpl *x509.Certificate
	}{
		{"server", server(now.Add(-time.Hour), now.Add(24*time.Hour))},
		{"server-expired", server(now.Add(-48*time.Hour), now.Add(-time.Hour))},
		{"client", client(now.Add(-time.Hour), now.Add(24*time.Hour))},
		{"client-expired", client(now.Add(-48*time.Hour), now.Add(-time.Hour))},
	}
	for _, s := range steps {
		if _, _, err := newCert(dir, s.name, ca, caKey, s.tmpl); err != nil {
			return err
		}
	}
	for _, n := range []string{"client", "client-expired"} {
		c, _ := os.ReadFile(filepath.Join(dir, n+".pem"))
		k, _ := os.ReadFile(filepath.Join(dir, n+".key"))
		if err := os.WriteFile(filepath.Join(dir, n+"-combined.pem"), append(c, k...), 0o644); err != nil {
			return err
		}
	}
	return nil
}

var serial int64 = time.Now().UnixNano()

func newCert(dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}
