package cohort

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"
)

// Config configures a Node. Its zero value works: a node with a unique id
// in cluster "default", on an embedded etcd in a fresh temporary directory.
type Config struct {
	// NodeID names the node in the cluster; unique among live nodes.
	// Default: "<hostname>-<pid>-<random>". Must be a valid actor name
	// without '/'.
	NodeID string
	// Cluster names the cluster; nodes of one cluster share a key prefix.
	// Default "default".
	Cluster string
	// Prefix is the etcd key prefix of the cluster. Default
	// "/cohort/<Cluster>".
	Prefix string

	// Endpoints are the etcd client URLs: host:port, http://host:port or
	// https://host:port (https, or TLS set, for TLS). Empty means: start an
	// embedded single-member etcd in this process (see DataDir), so one
	// machine needs nothing installed. Other nodes join it with Endpoints
	// set to Node.Endpoints().
	Endpoints []string
	// DataDir is the embedded etcd's data directory. Default: a new
	// temporary directory, removed by Stop. Set it to keep the cluster's
	// data (distributed children's specs, for instance) across restarts.
	// A node started on the DataDir of a run that crashed revokes that
	// run's lease, so it gets its id back at once.
	DataDir string
	// EmbeddedClientURL is the URL the embedded etcd listens on for clients,
	// e.g. "http://127.0.0.1:2379". Default: a free loopback port.
	EmbeddedClientURL string

	// TLS configures TLS to etcd. If nil and CAFile or CertFile is set, it
	// is built from the files.
	TLS *tls.Config
	// CAFile, CertFile and KeyFile are PEM files for TLS to etcd: the CA
	// that signed etcd's certificate, and this node's client certificate
	// and key (for etcd's client-cert authentication).
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to etcd when its auth is on.
	Username, Password string
	// DialTimeout bounds how long Start waits for etcd. Default 10s.
	DialTimeout time.Duration

	// LeaseTTL is the node's session lease TTL: how long after the node
	// dies its names, leadership and children are taken over. Default 5s;
	// at least 2s (etcd's minimum). See docs/operations.md.
	LeaseTTL time.Duration
	// LeaseMargin is how long before the lease's proven expiry the node
	// fences itself off. Default max(TTL/5, 300ms).
	LeaseMargin time.Duration

	// Addr is the transport address published in the member key, which
	// peers dial. Default: the address the transport listens on (see
	// Transport.ListenAddr).
	Addr string
	// Transport configures messaging between nodes: listen address, mutual
	// TLS, message size limit and send queue. Its zero value works.
	Transport TransportConfig
	// Kinds and Roles are published in the member key for placement.
	Kinds, Roles []string

	// Logger receives the node's logs; embedded etcd's own logs go through
	// it at warn level. Default: no logging.
	Logger *zap.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.NodeID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.NodeID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if err := actor.ValidateName(c.NodeID); err != nil || strings.Contains(c.NodeID, "/") {
		return c, fmt.Errorf("%w: NodeID %q: a node id is a non-empty name of printable characters without '/', at most %d bytes", ErrInvalidConfig, c.NodeID, actor.MaxNameLen)
	}
	for _, l := range []struct {
		field string
		names []string
	}{{"Kinds", c.Kinds}, {"Roles", c.Roles}} {
		for _, name := range l.names {
			if err := actor.ValidateName(name); err != nil {
				return c, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, l.field, err)
			}
		}
	}
	if c.Cluster == "" {
		c.Cluster = "default"
	}
	if strings.ContainsAny(c.Cluster, "/") || actor.ValidateName(c.Cluster) != nil {
		return c, fmt.Errorf("%w: Cluster %q: printable characters without '/'", ErrInvalidConfig, c.Cluster)
	}
	if c.Prefix == "" {
		c.Prefix = "/cohort/" + c.Cluster
	}
	prefix := c.Prefix
	c.Prefix = strings.TrimRight(c.Prefix, "/")
	if c.Prefix == "" || !strings.HasPrefix(c.Prefix, "/") {
		return c, fmt.Errorf("%w: Prefix %q: want an etcd key prefix below the root, such as \"/cohort/prod\"", ErrInvalidConfig, prefix)
	}
	if c.Addr != "" {
		if err := checkHostPort(c.Addr); err != nil {
			return c, fmt.Errorf("%w: Addr %q, the transport address peers dial: %v (want host:port)", ErrInvalidConfig, c.Addr, err)
		}
	}
	if tc := c.Transport; tc.MaxMessageSize < 0 || tc.QueueBytes < 0 || tc.DialTimeout < 0 {
		return c, fmt.Errorf("%w: Transport.MaxMessageSize, QueueBytes and DialTimeout must not be negative", ErrInvalidConfig)
	}
	if la := c.Transport.ListenAddr; la != "" {
		if _, _, err := net.SplitHostPort(la); err != nil {
			return c, fmt.Errorf("%w: Transport.ListenAddr %q: %v (want host:port, or :port for every interface)", ErrInvalidConfig, la, err)
		}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.DialTimeout < 0 || c.LeaseTTL < 0 || c.LeaseMargin < 0 {
		return c, fmt.Errorf("%w: DialTimeout, LeaseTTL and LeaseMargin must not be negative", ErrInvalidConfig)
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < lease.MinTTL {
		return c, fmt.Errorf("%w: LeaseTTL %v is below etcd's minimum lease TTL of %v: set it to at least %v, or leave it 0 for the default 5s",
			ErrInvalidConfig, c.LeaseTTL, lease.MinTTL, lease.MinTTL)
	}
	if err := c.leaseConfig().Validate(); err != nil {
		return c, fmt.Errorf("%w: LeaseTTL %v, LeaseMargin %v: %w (lower LeaseMargin or raise LeaseTTL)",
			ErrInvalidConfig, c.LeaseTTL, c.LeaseMargin, err)
	}
	for _, e := range c.Endpoints {
		if err := checkEndpoint(e); err != nil {
			return c, fmt.Errorf("%w: etcd endpoint %q: %v (want host:port, http://host:port or https://host:port)", ErrInvalidConfig, e, err)
		}
	}
	if c.TLS == nil && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != "") {
		if (c.CertFile == "") != (c.KeyFile == "") {
			return c, fmt.Errorf("%w: CertFile and KeyFile go together", ErrInvalidConfig)
		}
		info := transport.TLSInfo{TrustedCAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
		tc, err := info.ClientConfig()
		if err != nil {
			return c, fmt.Errorf("%w: TLS files: %w", ErrInvalidConfig, err)
		}
		c.TLS = tc
	}
	if len(c.Endpoints) == 0 && (c.TLS != nil || c.Username != "") {
		return c, fmt.Errorf("%w: TLS and Username are for an external etcd (set Endpoints); the embedded etcd serves plain HTTP without auth", ErrInvalidConfig)
	}
	if u := c.EmbeddedClientURL; u != "" && !strings.HasPrefix(u, "http://") {
		return c, fmt.Errorf("%w: EmbeddedClientURL %q: the embedded etcd serves plain http:// only (use an external etcd for TLS)", ErrInvalidConfig, u)
	}
	if c.TLS != nil {
		for _, e := range c.Endpoints {
			if strings.HasPrefix(e, "http://") {
				// The etcd client would talk plain HTTP to it, silently.
				return c, fmt.Errorf("%w: etcd endpoint %q is plain http, but TLS is configured: use https://", ErrInvalidConfig, e)
			}
		}
	}
	return c, nil
}

// leaseConfig is the node's session lease configuration.
func (c Config) leaseConfig() lease.Config {
	return lease.Config{TTL: c.LeaseTTL, Margin: c.LeaseMargin, Logger: c.Logger}
}

// checkHostPort checks that a is host:port with a host and a port number.
func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return fmt.Errorf("bad host %q", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// checkEndpoint checks that e names an etcd client endpoint: host:port,
// optionally after http://, https://, unix:// or unixs://.
func checkEndpoint(e string) error {
	if e == "" {
		return errors.New("empty")
	}
	hostport := e
	if i := strings.Index(e, "://"); i >= 0 {
		switch scheme := e[:i]; scheme {
		case "http", "https":
		case "unix", "unixs":
			return nil
		default:
			return fmt.Errorf("unknown scheme %q", scheme)
		}
		hostport = strings.TrimSuffix(e[i+3:], "/")
	}
	return checkHostPort(hostport)
}
