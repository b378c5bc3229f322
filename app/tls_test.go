package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"artifactstore/internal/client"
	"artifactstore/internal/digest"
)

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "artifactstore test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSAndLoopbackListener: listen serves HTTPS from the configured
// certificate; local_listen serves the same API in plain HTTP on loopback.
func TestTLSAndLoopbackListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	local := freePort(t)
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"),
		"server:\n  tls_cert_file: "+certFile+"\n  tls_key_file: "+keyFile+"\n  local_listen: "+local+"\n")
	p := startProcTLS(t, cfg, pool)
	tlsURL := strings.Replace(p.url, "http://", "https://", 1)

	c := client.New(tlsURL)
	c.Token = p.token
	c.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	files := map[string][]byte{"f": []byte("over tls")}
	publish(t, c, manifestOf("tls", "1", "ci", "release", files), files)

	lc := client.New("http://" + local)
	lc.Token = p.token
	if p, err := lc.GetPackage(ctxT(t), "tls", "1"); err != nil || p.Files[0].Path != "f" {
		t.Fatalf("plain HTTP on the loopback listener: %v", err)
	}
	// Plain HTTP to the TLS port is refused.
	resp, err := http.Get(p.url + "/healthz")
	if err == nil && resp.StatusCode == 200 {
		t.Fatal("the TLS listener answered plain HTTP with 200")
	}
	// A config with a non-loopback local_listen is refused.
	bad := writeLocalConfig(t, t.TempDir(), filepath.Join(dir, "x"), "server:\n  local_listen: 0.0.0.0:9999\n")
	if code, _, errOut := runCLI(t, "config", "check", "--config", bad); code == 0 || !strings.Contains(errOut, "server.local_listen") {
		t.Fatalf("non-loopback local_listen: exit %d %s", code, errOut)
	}
}

// startProcTLS starts serve on an HTTPS listener and waits for /healthz.
func startProcTLS(t *testing.T, cfgFile string, pool *x509.CertPool) *proc {
	t.Helper()
	p := startProcNoWait(t, cfgFile)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := strings.Replace(p.url, "http://", "https://", 1)
	for i := 0; i < 300; i++ {
		if resp, err := hc.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("TLS server not up:\n%s", p.logs.String())
	return nil
}

// TestCorruptReadOverHTTP2ResetsTheStream: over HTTP/2 (TLS) a read that
// finds the bytes corrupt after the status was sent resets the stream,
// so no client or proxy can take the short body for a whole one (ending
// the handler early would end the stream cleanly on HTTP/2). And the
// next answer, 503, carries none of the content's caching headers.
func TestCorruptReadOverHTTP2ResetsTheStream(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	objects := filepath.Join(dir, "objects")
	cfg := writeLocalConfig(t, dir, objects, "server:\n  tls_cert_file: "+certFile+"\n  tls_key_file: "+keyFile+"\n")
	p := startProcTLS(t, cfg, pool)
	c := client.New(strings.Replace(p.url, "http://", "https://", 1))
	c.Token = p.token
	c.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	files := map[string][]byte{"f.bin": randBytes(2201, 3<<20)}
	publish(t, c, manifestOf("h2", "1", "ci", "release", files), files)
	localCorrupter(objects).flip(t, digest.FromBytes(files["f.bin"]))

	resp, err := c.Get(ctxT(t), client.FilePath("h2", "1", "f.bin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET over TLS: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") || len(body) >= len(files["f.bin"]) {
		t.Fatalf("body of a corrupt object over HTTP/2: %d of %d bytes, error %v; want the stream reset (INTERNAL_ERROR)", len(body), len(files["f.bin"]), err)
	}
	resp, err = c.Get(ctxT(t), client.FilePath("h2", "1", "f.bin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("ETag") != "" || resp.Header.Get("Repr-Digest") != "" {
		t.Fatalf("GET after the mismatch: %d, Cache-Control %q, ETag %q, Repr-Digest %q; want 503 no-store without the content's headers",
			resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"), resp.Header.Get("Repr-Digest"))
	}
}
