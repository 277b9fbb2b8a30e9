package cohort_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/internal/embedetcd"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/testcert"
)

// writePEM writes a CA and a certificate it issued as PEM files.
func writePEM(t *testing.T, dir string, ca *testcert.CA, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	cert := ca.Issue(t, name)
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+"-key.pem")
	for file, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: ca.Cert.Raw},
		certFile: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// A node reaches an etcd that requires TLS client certificates and
// passwords, given the files and credentials; without them it fails to
// start with ErrEtcdUnreachable.
func TestEtcdTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "etcd-ca")
	caFile, serverCert, serverKey := writePEM(t, dir, ca, "etcd-server")
	_, clientCert, clientKey := writePEM(t, dir, ca, "cohort-node")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedetcd.Start(ctx, embedetcd.Config{Dir: filepath.Join(dir, "etcd"), UnsafeNoFsync: true,
		ClientTLS: &transport.TLSInfo{CertFile: serverCert, KeyFile: serverKey, TrustedCAFile: caFile, ClientCertAuth: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	endpoints := srv.Endpoints()

	tlsInfo := transport.TLSInfo{CertFile: clientCert, KeyFile: clientKey, TrustedCAFile: caFile}
	tc, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, step := range []func() error{
		func() error { _, err := admin.RoleAdd(ctx, "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "root", "s3cret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enable etcd auth: %v", err)
		}
	}

	n := startNode(t, cohort.Config{NodeID: "secure", Endpoints: endpoints, CAFile: caFile, CertFile: clientCert,
		KeyFile: clientKey, Username: "root", Password: "s3cret"})
	waitMembers(t, n, "secure")

	rogueCA := testcert.NewCA(t, "rogue-ca")
	_, rogueCert, rogueKey := writePEM(t, t.TempDir(), rogueCA, "rogue")
	plain := etcdtest.Start(t)
	web := httptest.NewUnstartedServer(http.NotFoundHandler()) // TLS, HTTP/1.1 only: not etcd
	web.Config.ErrorLog = log.New(io.Discard, "", 0)           // the etcd client speaks plain HTTP/2 to it
	web.StartTLS()
	t.Cleanup(web.Close)
	h2web := httptest.NewServer(h2c.NewHandler(http.NotFoundHandler(), &http2.Server{})) // plain HTTP/2: not etcd
	t.Cleanup(h2web.Close)
	// Each refusal says what to change.
	bad := map[string]struct {
		cfg  cohort.Config
		hint string
	}{
		"no client certificate": {cohort.Config{CAFile: caFile, Username: "root", Password: "s3cret"}, "set CertFile and KeyFile"},
		"wrong password": {cohort.Config{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey, Username: "root", Password: "nope",
			DialTimeout: 20 * time.Second}, "authentication failed"}, // etcd answers, after its password hashing
		"no TLS at all": {cohort.Config{Username: "root", Password: "s3cret"}, "set CAFile"},
		"http to a TLS etcd": {cohort.Config{Endpoints: []string{strings.Replace(endpoints[0], "https://", "http://", 1)}},
			"speaks TLS"},
		"untrusted client certificate": {cohort.Config{CAFile: caFile, CertFile: rogueCert, KeyFile: rogueKey}, "refused this node's client certificate"},
		"TLS to a plain etcd": {cohort.Config{Endpoints: []string{strings.TrimPrefix(plain.Endpoints()[0], "http://")}, CAFile: caFile},
			"does not speak TLS"},
		"nothing listening": {cohort.Config{Endpoints: []string{"127.0.0.1:1"}}, "cannot connect"},
		"a web server":      {cohort.Config{Endpoints: []string{strings.TrimPrefix(web.URL, "https://")}}, "is it etcd's client URL"},
		"an HTTP/2 server":  {cohort.Config{Endpoints: []string{h2web.URL}}, "answers HTTP/2, but not as etcd does"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if cfg.Endpoints == nil {
				cfg.Endpoints = endpoints
			}
			if cfg.DialTimeout == 0 {
				cfg.DialTimeout = 2 * time.Second // each of these fails only by timing out
			}
			n, err := cohort.Start(context.Background(), cfg)
			if err == nil {
				n.Stop(context.Background())
				t.Fatal("started without valid credentials")
			}
			t.Logf("%s: %v", name, err)
			want := cohort.ErrEtcdUnreachable
			if name == "wrong password" {
				want = cohort.ErrEtcdDenied // etcd answered
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("error %v, want %v saying %q", err, want, tc.hint)
			}
		})
	}
	// TLS files with an http:// endpoint would silently run plain.
	_, err = cohort.Start(context.Background(), cohort.Config{Endpoints: plain.Endpoints(), CAFile: caFile})
	if !errors.Is(err, cohort.ErrInvalidConfig) || !strings.Contains(err.Error(), "use https://") {
		t.Fatalf("TLS files with an http:// endpoint: %v, want ErrInvalidConfig", err)
	}
}
