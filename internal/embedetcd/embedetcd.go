// Package embedetcd runs etcd members inside the current process.
//
// It is what a cohort node uses when it is given no etcd endpoints, and what
// the test helpers build on. Start runs one member (by default a single-member
// cluster); StartCluster runs every member of a new multi-member cluster in
// this process. Both return only once every member is ready to serve, or with
// an error; neither hangs past its context.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// Defaults applied to zero Config fields.
const (
	DefaultName              = "cohort"
	DefaultClusterToken      = "cohort"
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = time.Second
	DefaultQuotaBackendBytes = 512 << 20
)

// portAttempts bounds how often Start picks new free ports when a port it
// picked itself was taken by someone else before etcd could bind it.
const portAttempts = 5

// Peer names one member of a multi-member cluster and the URL its peers use
// to reach it.
type Peer struct {
	Name    string
	PeerURL string
}

// Config describes one etcd member. The zero value, with Dir set, is a
// working single-member cluster on free loopback ports.
type Config struct {
	// Dir is the data dir. Required. It is created if missing; a dir that
	// already holds data restarts the member from it.
	Dir string
	// Name is the member name. Default DefaultName.
	Name string
	// ClientURL is where clients connect: "http://host:port". Default: a
	// free loopback TCP port.
	ClientURL string
	// PeerURL is where the other members connect: "http://host:port".
	// Default: a free loopback TCP port.
	PeerURL string
	// InitialCluster lists every member of a new cluster, this one included
	// (matched by Name). Empty means a single-member cluster of this member.
	// It is ignored once Dir holds data.
	InitialCluster []Peer
	// ClusterToken tells clusters apart at bootstrap. Default
	// DefaultClusterToken.
	ClusterToken string
	// HeartbeatInterval is the raft heartbeat. Default
	// DefaultHeartbeatInterval; rounded to whole milliseconds.
	HeartbeatInterval time.Duration
	// ElectionTimeout is the raft election timeout; at least five
	// heartbeats. Default DefaultElectionTimeout.
	ElectionTimeout time.Duration
	// QuotaBackendBytes caps the size of the backend database. Default
	// DefaultQuotaBackendBytes.
	QuotaBackendBytes int64
	// AutoCompactionMode is "periodic" or "revision"; empty keeps automatic
	// compaction off, so history is compacted only when someone asks.
	AutoCompactionMode string
	// AutoCompactionRetention is the retention for AutoCompactionMode, for
	// example "1h" or "1000". Ignored when AutoCompactionMode is empty.
	AutoCompactionRetention string
	// UnsafeNoFsync turns off fsync. Data may be lost on a machine crash;
	// meant for tests only.
	UnsafeNoFsync bool
	// ClientTLS, if set, serves clients over TLS with these files (and,
	// with ClientCertAuth, requires client certificates); the client URL's
	// scheme is then https.
	ClientTLS *transport.TLSInfo
	// Logger receives etcd's own logs at warn level and above. Default:
	// none (zap.NewNop).
	Logger *zap.Logger
}

// Server is one running etcd member.
type Server struct {
	cfg  Config
	etcd *embed.Etcd

	mu     sync.Mutex
	grpcs  []*grpc.Server
	closed bool
	done   chan struct{}
}

// Start runs one etcd member and returns once it is ready to serve client
// requests. When the member is part of a multi-member cluster, ready means it
// has joined a quorum, so the other members must be starting too (see
// StartCluster). If ctx ends first, Start stops the member and returns an
// error wrapping ErrNotReady and the context error. A port Start picked
// itself that turns out to be taken is replaced by another; an explicit URL
// whose port is taken fails with ErrAddrInUse.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	servers, err := StartCluster(ctx, []Config{cfg})
	if err != nil {
		return nil, err
	}
	return servers[0], nil
}

// StartCluster runs the members of a new cluster in this process and returns
// once all of them are ready, in the order given. Each Config needs its own
// Dir and a distinct Name (defaults to "m0", "m1", ... when there is more
// than one); InitialCluster is filled in from the configs. On any failure,
// including the end of ctx, every member already started is stopped and the
// error is returned.
func StartCluster(ctx context.Context, cfgs []Config) ([]*Server, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("%w: no members", ErrInvalidConfig)
	}
	cfgs = append([]Config(nil), cfgs...)
	for i := range cfgs {
		if err := cfgs[i].fill(i, len(cfgs)); err != nil {
			return nil, err
		}
	}
	if err := checkNames(cfgs); err != nil {
		return nil, err
	}
	fresh := make([]bool, len(cfgs))
	for i, c := range cfgs {
		entries, err := os.ReadDir(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDirNotUsable, err)
		}
		fresh[i] = len(entries) == 0
	}
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			// A member that bootstrapped on the previous attempt recorded
			// that attempt's peer URLs; start it from scratch.
			for i, c := range cfgs {
				if fresh[i] {
					if err := emptyDir(c.Dir); err != nil {
						return nil, err
					}
				}
			}
		}
		picked, err := pickURLs(cfgs)
		if err != nil {
			return nil, err
		}
		if len(cfgs) > 1 {
			peers := make([]Peer, len(cfgs))
			for i, c := range picked {
				peers[i] = Peer{Name: c.Name, PeerURL: c.PeerURL}
			}
			for i := range picked {
				if len(picked[i].InitialCluster) == 0 {
					picked[i].InitialCluster = peers
				}
			}
		}
		servers, err := startAll(ctx, picked, cfgs)
		if err == nil {
			return servers, nil
		}
		if !errors.Is(err, errPickedPortTaken) || attempt == portAttempts {
			return nil, err
		}
	}
}

var errPickedPortTaken = errors.New("picked port taken")

func startAll(ctx context.Context, cfgs, asGiven []Config) ([]*Server, error) {
	servers := make([]*Server, 0, len(cfgs))
	closeAll := func() { CloseAll(servers...) }
	for i, c := range cfgs {
		s, err := launch(c)
		if err != nil {
			closeAll()
			if errors.Is(err, ErrAddrInUse) && !givenAddrBusy(asGiven[i]) {
				err = fmt.Errorf("%w: %w", errPickedPortTaken, err)
			}
			return nil, err
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		if err := s.waitReady(ctx); err != nil {
			closeAll()
			return nil, err
		}
	}
	return servers, nil
}

// givenAddrBusy reports whether a TCP address c names explicitly cannot be
// bound, which tells a clash on a given port from one on a picked port.
func givenAddrBusy(c Config) bool {
	for _, s := range []string{c.ClientURL, c.PeerURL} {
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			return true
		}
		_ = l.Close()
	}
	return false
}

// fill applies defaults and checks the fields that need no I/O.
func (c *Config) fill(i, n int) error {
	if c.Dir == "" {
		return ErrNoDir
	}
	if c.Name == "" {
		c.Name = DefaultName
		if n > 1 {
			c.Name = fmt.Sprintf("m%d", i)
		}
	}
	if c.ClusterToken == "" {
		c.ClusterToken = DefaultClusterToken
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.ElectionTimeout < 5*c.HeartbeatInterval {
		return fmt.Errorf("%w: election timeout %v is less than five heartbeats of %v", ErrInvalidConfig, c.ElectionTimeout, c.HeartbeatInterval)
	}
	if c.QuotaBackendBytes <= 0 {
		c.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.ClientURL != "" {
		if _, err := parseURL(c.ClientURL); err != nil {
			return err
		}
	}
	if c.PeerURL != "" {
		if _, err := parseURL(c.PeerURL); err != nil {
			return err
		}
	}
	return prepareDir(c.Dir)
}

func checkNames(cfgs []Config) error {
	seen := make(map[string]bool, len(cfgs))
	dirs := make(map[string]bool, len(cfgs))
	for _, c := range cfgs {
		if seen[c.Name] {
			return fmt.Errorf("%w: duplicate member name %q", ErrInvalidConfig, c.Name)
		}
		seen[c.Name] = true
		d := filepath.Clean(c.Dir)
		if dirs[d] {
			return fmt.Errorf("%w: members share data dir %q", ErrInvalidConfig, c.Dir)
		}
		dirs[d] = true
	}
	return nil
}

// prepareDir creates dir and proves it is writable, so that a bad dir fails
// here with a clear error instead of deep inside etcd.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrDirNotUsable, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDirNotUsable, err)
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%w: %w", ErrDirNotUsable, err)
	}
	return nil
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDirNotUsable, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("%w: %w", ErrDirNotUsable, err)
		}
	}
	return nil
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %w", ErrInvalidConfig, s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: url %q: scheme must be http or https", ErrInvalidConfig, s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return nil, fmt.Errorf("%w: url %q: %w", ErrInvalidConfig, s, err)
	}
	return u, nil
}

// pickURLs returns copies of cfgs with every empty URL replaced by a free
// loopback port.
func pickURLs(cfgs []Config) ([]Config, error) {
	out := append([]Config(nil), cfgs...)
	for i := range out {
		for j, p := range []*string{&out[i].ClientURL, &out[i].PeerURL} {
			if *p != "" {
				continue
			}
			port, err := FreePort()
			if err != nil {
				return nil, err
			}
			scheme := "http"
			if j == 0 && out[i].ClientTLS != nil {
				scheme = "https"
			}
			*p = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
		}
	}
	return out, nil
}

// FreePort returns a loopback TCP port that was free when it was asked for.
// Another process may take it before it is used; Start copes with that for
// the ports it picks itself.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("embedetcd: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launch(c Config) (*Server, error) {
	s := &Server{cfg: c, done: make(chan struct{})}
	ec, err := s.embedConfig()
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: member %q (client %s, peer %s): %w", ErrAddrInUse, c.Name, c.ClientURL, c.PeerURL, err)
		}
		return nil, fmt.Errorf("embedetcd: start member %q in %s: %w", c.Name, c.Dir, err)
	}
	s.etcd = e
	return s, nil
}

func (s *Server) embedConfig() (*embed.Config, error) {
	c := s.cfg
	ec := embed.NewConfig()
	ec.Name = c.Name
	ec.Dir = c.Dir
	cu, err := parseURL(c.ClientURL)
	if err != nil {
		return nil, err
	}
	pu, err := parseURL(c.PeerURL)
	if err != nil {
		return nil, err
	}
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	if c.ClientTLS != nil {
		ec.ClientTLSInfo = *c.ClientTLS
	}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	peers := c.InitialCluster
	if len(peers) == 0 {
		peers = []Peer{{Name: c.Name, PeerURL: c.PeerURL}}
	}
	parts := make([]string, 0, len(peers))
	found := false
	for _, p := range peers {
		if _, err := parseURL(p.PeerURL); err != nil {
			return nil, err
		}
		if p.Name == c.Name {
			found = true
			if p.PeerURL != c.PeerURL {
				return nil, fmt.Errorf("%w: member %q has peer URL %s but the initial cluster says %s", ErrInvalidConfig, c.Name, c.PeerURL, p.PeerURL)
			}
		}
		parts = append(parts, p.Name+"="+p.PeerURL)
	}
	if !found {
		return nil, fmt.Errorf("%w: member %q is not in its initial cluster", ErrInvalidConfig, c.Name)
	}
	sort.Strings(parts)
	ec.InitialCluster = strings.Join(parts, ",")
	ec.InitialClusterToken = c.ClusterToken
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.TickMs = uint(c.HeartbeatInterval.Milliseconds())
	if ec.TickMs == 0 {
		ec.TickMs = 1
	}
	ec.ElectionMs = uint(c.ElectionTimeout.Milliseconds())
	ec.QuotaBackendBytes = c.QuotaBackendBytes
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "0"
	if c.AutoCompactionMode != "" {
		ec.AutoCompactionMode = c.AutoCompactionMode
		ec.AutoCompactionRetention = c.AutoCompactionRetention
	}
	ec.UnsafeNoFsync = c.UnsafeNoFsync
	ec.EnableGRPCGateway = false
	ec.LogLevel = "warn"
	if !c.Logger.Core().Enabled(zapcore.WarnLevel) {
		// etcd renders every slow request as text for its warning, even
		// when nothing logs it: under load that costs it more CPU still.
		ec.WarningApplyDuration = time.Hour
		ec.WarningUnaryRequestDuration = time.Hour
	} else if ec.WarningUnaryRequestDuration == 0 {
		// embed.NewConfig leaves it unset (only etcd's flag has the
		// default), and at zero every request is warned about.
		ec.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(
		c.Logger.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel)).Named("etcd").With(zap.String("member", c.Name)),
	)
	// Keep a handle on the client gRPC servers: Close stops them hard, so
	// open watch streams do not hold shutdown for etcd's request timeout.
	ec.ServiceRegister = func(g *grpc.Server) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			g.Stop()
			return
		}
		s.grpcs = append(s.grpcs, g)
	}
	return ec, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	select {
	case <-s.etcd.Server.ReadyNotify():
		return nil
	case <-s.etcd.Server.StopNotify():
		return fmt.Errorf("%w: member %q", ErrStopped, s.cfg.Name)
	case err, ok := <-s.etcd.Err():
		if !ok || err == nil {
			return fmt.Errorf("%w: member %q", ErrStopped, s.cfg.Name)
		}
		return fmt.Errorf("%w: member %q: %w", ErrStopped, s.cfg.Name, err)
	case <-ctx.Done():
		return fmt.Errorf("%w: member %q: %w", ErrNotReady, s.cfg.Name, ctx.Err())
	}
}

// Endpoints returns the client URLs of this member, for clientv3.Config.
func (s *Server) Endpoints() []string { return []string{s.cfg.ClientURL} }

// ClientURL returns the URL clients use to reach this member.
func (s *Server) ClientURL() string { return s.cfg.ClientURL }

// PeerURL returns the URL the other members use to reach this member.
func (s *Server) PeerURL() string { return s.cfg.PeerURL }

// Name returns the member name.
func (s *Server) Name() string { return s.cfg.Name }

// Config returns the member's config with every default and picked URL
// filled in; starting a new Server from it after Close reuses the same
// data dir and URLs.
func (s *Server) Config() Config { return s.cfg }

// Etcd returns the underlying embedded etcd, for callers that need more than
// this package offers. It must not be closed directly; use Close.
func (s *Server) Etcd() *embed.Etcd { return s.etcd }

// Done is closed once Close has returned.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops the member: it ends every client connection at once (open
// watches included), stops raft, releases the ports and the data dir, and
// returns when all of that is done. A leader of a multi-member cluster hands
// leadership to a connected peer first when one is available. A single
// member closes in milliseconds; a member of a multi-member cluster takes
// about a second, the time etcd allows its peer connections to drain.
// Calling Close again waits for the first call to finish.
func (s *Server) Close() {
	if s.beginClose() {
		s.finishClose()
	}
}

// CloseAll stops several members together, such as every member of a
// cluster, without handing leadership from one stopping member to another.
// It returns when all of them have stopped.
func CloseAll(servers ...*Server) {
	var mine []*Server
	for _, s := range servers {
		if s != nil && s.beginClose() {
			mine = append(mine, s)
		}
	}
	var wg sync.WaitGroup
	for _, s := range mine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.etcd.Server.HardStop()
		}()
	}
	wg.Wait()
	for _, s := range mine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.finishClose()
		}()
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			<-s.done
		}
	}
}

// beginClose marks s closed and stops its client gRPC servers. It reports
// false, after waiting for the other call to finish, when s was already
// being closed.
func (s *Server) beginClose() bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return false
	}
	s.closed = true
	grpcs := s.grpcs
	s.grpcs = nil
	s.mu.Unlock()

	for _, g := range grpcs {
		g.Stop()
	}
	return true
}

func (s *Server) finishClose() {
	select {
	case <-s.etcd.Server.ReadyNotify():
	default:
		// embed.Etcd.Close waits for its client servers, which wait for
		// the member to be ready or stopping; stop raft first so a member
		// that never became ready does not hang Close.
		s.etcd.Server.HardStop()
	}
	s.etcd.Close()
	close(s.done)
}
