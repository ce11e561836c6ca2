package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// runPKI writes into DIR (skipping files that already exist):
//
//	ca.crt, ca.key               self-signed CA
//	apiserver.crt, apiserver.key serving cert for 127.0.0.1/localhost/kubernetes.default...
//	sa.key, sa.pub               RSA service-account signing key pair
//	token                        random admin bearer token
//	front-proxy-ca.crt/.key      CA the API server trusts for aggregation-layer request headers
//	front-proxy-client.crt/.key  client cert the API server proxies to aggregated APIs with
//	extension.crt, extension.key cert of the aggregated metrics servers and KEDA's gRPC link
//	                             (server and client auth; signed by ca.crt)
func runPKI(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: kubelocal pki DIR")
		return 2
	}
	if err := writePKI(args[0]); err != nil {
		fmt.Fprintln(os.Stderr, "pki:", err)
		return 1
	}
	return 0
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func writePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	if exists(p("ca.crt")) && exists(p("apiserver.crt")) && exists(p("sa.key")) && exists(p("token")) &&
		exists(p("front-proxy-client.crt")) && exists(p("extension.crt")) {
		return nil
	}
	ca, err := newCA("kubelocal-ca")
	if err != nil {
		return err
	}
	apiserver, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	})
	if err != nil {
		return err
	}
	// Aggregated APIs are reached through ExternalName Services pointing at localhost; the
	// API server checks their certificate for <service>.<namespace>.svc.
	extension, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kubelocal-extension"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames: []string{"localhost", "keda-metrics-apiserver.keda.svc", "keda-operator.keda.svc",
			"custom-metrics-apiserver.custom-metrics.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		return err
	}
	frontProxyCA, err := newCA("kubelocal-front-proxy-ca")
	if err != nil {
		return err
	}
	// The CN must match the API server's --requestheader-allowed-names.
	frontProxyClient, err := frontProxyCA.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "front-proxy-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	for name, pair := range map[string]keyPair{
		"ca": ca.keyPair, "apiserver": apiserver, "extension": extension,
		"front-proxy-ca": frontProxyCA.keyPair, "front-proxy-client": frontProxyClient,
	} {
		if err := pair.write(p(name)); err != nil {
			return err
		}
	}
	if err := writePEM(p("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return err
	}
	if err := writePEM(p("sa.pub"), "PUBLIC KEY", saPub); err != nil {
		return err
	}
	return os.WriteFile(p("token"), []byte(hex.EncodeToString(tok)+"\n"), 0o600)
}

// keyPair is a certificate and its EC private key, both DER.
type keyPair struct{ cert, key []byte }

// write stores the pair as <base>.crt and <base>.key.
func (k keyPair) write(base string) error {
	if err := writePEM(base+".crt", "CERTIFICATE", k.cert); err != nil {
		return err
	}
	return writePEM(base+".key", "EC PRIVATE KEY", k.key)
}

type authority struct {
	keyPair
	cert   *x509.Certificate
	signer *ecdsa.PrivateKey
	serial int64
}

const validity = 10 * 365 * 24 * time.Hour

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	return key, der, err
}

func newCA(name string) (*authority, error) {
	key, keyDER, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now,
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{keyPair: keyPair{der, keyDER}, cert: cert, signer: key, serial: 1}, nil
}

// issue signs a leaf certificate for tmpl (subject, usages and names filled in by the caller).
func (a *authority) issue(tmpl *x509.Certificate) (keyPair, error) {
	key, keyDER, err := newKey()
	if err != nil {
		return keyPair{}, err
	}
	a.serial++
	now := time.Now().Add(-time.Hour)
	tmpl.SerialNumber = big.NewInt(a.serial)
	tmpl.NotBefore, tmpl.NotAfter = now, now.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.signer)
	return keyPair{der, keyDER}, err
}
