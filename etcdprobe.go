package cohort

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// probeEtcd looks at why etcd at endpoint did not answer, for the error of
// a Start that could not reach it: whether the port is open, and whether
// TLS is needed, offered or refused on it, with what to change. It returns
// "" when it finds nothing wrong (a plain etcd that answers TCP, or TLS
// that completes).
func probeEtcd(endpoint string, tc *tls.Config, timeout time.Duration) string {
	scheme, host := "", endpoint
	if i := strings.Index(endpoint, "://"); i >= 0 {
		scheme, host = endpoint[:i], endpoint[i+3:]
	}
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	if scheme == "unix" || scheme == "unixs" {
		return ""
	}
	dial := func() (net.Conn, error) {
		conn, err := net.DialTimeout("tcp", host, timeout)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(timeout))
		}
		return conn, err
	}
	conn, err := dial()
	if err != nil {
		return fmt.Sprintf("cannot connect to %s: %v", host, err)
	}
	defer conn.Close()
	if tc == nil && scheme != "https" {
		// A plain client: does the server want TLS?
		probe := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // only asks whether TLS is spoken
		if probe.Handshake() == nil {
			if probe.ConnectionState().NegotiatedProtocol != "h2" {
				return fmt.Sprintf("%s speaks TLS but not gRPC's HTTP/2, as etcd does: is it etcd's client URL?", host)
			}
			return fmt.Sprintf("%s speaks TLS: use an https:// endpoint and set CAFile to the CA that signed its certificate (and CertFile and KeyFile if it asks for client certificates)", host)
		}
		return ""
	}
	cfg := &tls.Config{}
	if tc != nil {
		cfg = tc.Clone()
	}
	if cfg.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			cfg.ServerName = h
		}
	}
	cfg.NextProtos = []string{"h2"}
	tconn := tls.Client(conn, cfg)
	if err := tconn.Handshake(); err != nil {
		if plain, perr := dial(); perr == nil {
			defer plain.Close()
			if speaksPlainHTTP2(plain) {
				return fmt.Sprintf("%s does not speak TLS: use an http:// endpoint and no CAFile, CertFile or KeyFile (%v)", host, err)
			}
		}
		return tlsHint(host, err)
	}
	// Under TLS 1.3 a refused client certificate shows on the first read.
	if _, err := tconn.Write([]byte(http2Preface)); err != nil {
		return tlsHint(host, err)
	}
	var b [1]byte
	if _, err := tconn.Read(b[:]); err != nil {
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
		return tlsHint(host, err)
	}
	return ""
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// speaksPlainHTTP2 reports whether the server on conn answers the HTTP/2
// preface, unencrypted, with a SETTINGS frame, as a plain etcd does.
func speaksPlainHTTP2(conn net.Conn) bool {
	if _, err := conn.Write([]byte(http2Preface)); err != nil {
		return false
	}
	var h [9]byte // a frame header: length (3), type (1), flags, stream id
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return false
	}
	return h[3] == 0x4
}

// tlsHint says what a TLS failure with etcd at host means for the Config.
func tlsHint(host string, err error) string {
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("TLS with %s: its certificate is not signed by a CA this node trusts: set CAFile to the CA that signed it (%v)", host, err)
	case errors.As(err, &hostErr):
		return fmt.Sprintf("TLS with %s: its certificate is not valid for that address (%v)", host, err)
	case errors.As(err, &invalid):
		return fmt.Sprintf("TLS with %s: its certificate is not valid (%v)", host, err)
	case strings.Contains(msg, "certificate required"):
		return fmt.Sprintf("TLS with %s: etcd asks for a client certificate: set CertFile and KeyFile (%v)", host, err)
	case strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate authority") ||
		strings.Contains(msg, "expired certificate") || strings.Contains(msg, "certificate revoked"):
		return fmt.Sprintf("TLS with %s: etcd refused this node's client certificate: it must be valid and signed by a CA etcd trusts (%v)", host, err)
	}
	return fmt.Sprintf("TLS with %s: %v", host, err)
}
