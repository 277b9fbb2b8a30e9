package embedetcd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cohort-go/cohort/internal/embedetcd"
)

func testConfig(t *testing.T) embedetcd.Config {
	return embedetcd.Config{
		Dir:               t.TempDir(),
		HeartbeatInterval: 10 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
		UnsafeNoFsync:     true,
	}
}

func start(t *testing.T, cfg embedetcd.Config) *embedetcd.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := embedetcd.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func putGet(t *testing.T, c *clientv3.Client, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	mustGet(t, c, key, val)
}

func mustGet(t *testing.T, c *clientv3.Client, key, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
		t.Fatalf("get %s = %v, want %q", key, resp.Kvs, want)
	}
}

func TestStartServesAndClosesFast(t *testing.T) {
	begin := time.Now()
	s := start(t, testConfig(t))
	started := time.Since(begin)
	t.Logf("start took %v", started)
	if started > 5*time.Second {
		t.Errorf("start took %v", started)
	}
	c := client(t, s.Endpoints())
	putGet(t, c, "k", "v")

	// An open watch must not hold Close for etcd's request timeout.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wch := c.Watch(wctx, "k")
	if _, err := c.Put(context.Background(), "k", "v2"); err != nil {
		t.Fatal(err)
	}
	<-wch

	begin = time.Now()
	s.Close()
	closed := time.Since(begin)
	t.Logf("close took %v", closed)
	if closed > 2*time.Second {
		t.Errorf("close took %v", closed)
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Close")
	}
	s.Close() // a second call returns at once
}

func TestRestartKeepsDataAndURLs(t *testing.T) {
	s := start(t, testConfig(t))
	putGet(t, client(t, s.Endpoints()), "k", "kept")
	s.Close()

	s2 := start(t, s.Config())
	if s2.ClientURL() != s.ClientURL() || s2.PeerURL() != s.PeerURL() {
		t.Fatalf("restart URLs %s %s, want %s %s", s2.ClientURL(), s2.PeerURL(), s.ClientURL(), s.PeerURL())
	}
	mustGet(t, client(t, s2.Endpoints()), "k", "kept")
}

func TestStartClusterOfThree(t *testing.T) {
	cfgs := make([]embedetcd.Config, 3)
	for i := range cfgs {
		cfgs[i] = testConfig(t)
		cfgs[i].HeartbeatInterval = 20 * time.Millisecond
		cfgs[i].ElectionTimeout = 400 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	servers, err := embedetcd.StartCluster(ctx, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3-member start took %v", time.Since(begin))
	var eps []string
	for _, s := range servers {
		t.Cleanup(func() {
			begin := time.Now()
			s.Close()
			t.Logf("close %s took %v", s.Name(), time.Since(begin))
		})
		eps = append(eps, s.Endpoints()...)
	}
	c := client(t, eps)
	putGet(t, c, "k", "three")
	resp, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 3 {
		t.Fatalf("member list has %d members, want 3", len(resp.Members))
	}
	for i, s := range servers {
		mustGet(t, client(t, s.Endpoints()), "k", "three")
		if want := fmt.Sprintf("m%d", i); s.Name() != want {
			t.Errorf("member %d name %q, want %q", i, s.Name(), want)
		}
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	peerPort, err := embedetcd.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	otherPort, err := embedetcd.FreePort()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cfg     func(embedetcd.Config) embedetcd.Config
		timeout time.Duration
		want    error
	}{
		{"no dir", func(c embedetcd.Config) embedetcd.Config { c.Dir = ""; return c }, 0, embedetcd.ErrNoDir},
		{"dir under a file", func(c embedetcd.Config) embedetcd.Config { c.Dir = filepath.Join(file, "d"); return c }, 0, embedetcd.ErrDirNotUsable},
		{"client port in use", func(c embedetcd.Config) embedetcd.Config {
			c.ClientURL = "http://" + busy.Addr().String()
			return c
		}, 0, embedetcd.ErrAddrInUse},
		{"bad url", func(c embedetcd.Config) embedetcd.Config { c.ClientURL = "ftp://x"; return c }, 0, embedetcd.ErrInvalidConfig},
		{"short election timeout", func(c embedetcd.Config) embedetcd.Config {
			c.ElectionTimeout = c.HeartbeatInterval
			return c
		}, 0, embedetcd.ErrInvalidConfig},
		{"no quorum before deadline", func(c embedetcd.Config) embedetcd.Config {
			c.Name = "a"
			c.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", peerPort)
			c.InitialCluster = []embedetcd.Peer{
				{Name: "a", PeerURL: c.PeerURL},
				{Name: "b", PeerURL: fmt.Sprintf("http://127.0.0.1:%d", otherPort)},
			}
			return c
		}, 300 * time.Millisecond, embedetcd.ErrNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			begin := time.Now()
			s, err := embedetcd.Start(ctx, tt.cfg(testConfig(t)))
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Start error %v, want %v", err, tt.want)
			}
			if d := time.Since(begin); d > timeout+3*time.Second {
				t.Errorf("Start took %v to fail", d)
			}
			t.Logf("error: %v", err)
		})
	}
}

// With a logger that shows warnings, quick requests are not warned about
// as slow: only those over etcd's 300 ms default are.
func TestQuickRequestsAreNotWarnedAbout(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := testConfig(t)
	cfg.Logger = zap.New(core)
	s := start(t, cfg)
	c := client(t, s.Endpoints())
	for i := range 20 {
		putGet(t, c, fmt.Sprintf("/k%d", i), "v")
	}
	for _, e := range logs.FilterMessageSnippet("request stats").All() {
		if spent, ok := e.ContextMap()["time spent"].(time.Duration); !ok || spent < 300*time.Millisecond {
			t.Fatalf("a quick request was warned about as slow: %v", e.ContextMap())
		}
	}
}
