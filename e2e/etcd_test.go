//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/internal/embedetcd"
	"github.com/cohort-go/cohort/internal/etcdtest"
)

// Environment of an etcd member process.
const (
	envEtcdName    = "E2E_ETCD_NAME"
	envEtcdDir     = "E2E_ETCD_DIR"
	envEtcdClient  = "E2E_ETCD_CLIENT"
	envEtcdPeer    = "E2E_ETCD_PEER"
	envEtcdCluster = "E2E_ETCD_CLUSTER" // name=peerURL,...
)

// runEtcdMember is the main of an etcd member process: it starts (or
// restarts, from its data dir) one member, says "ready", and serves until
// its stdin closes.
func runEtcdMember() int {
	var peers []embedetcd.Peer
	for _, kv := range strings.Split(os.Getenv(envEtcdCluster), ",") {
		name, url, ok := strings.Cut(kv, "=")
		if ok {
			peers = append(peers, embedetcd.Peer{Name: name, PeerURL: url})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := embedetcd.Start(ctx, embedetcd.Config{
		Dir: os.Getenv(envEtcdDir), Name: os.Getenv(envEtcdName),
		ClientURL: os.Getenv(envEtcdClient), PeerURL: os.Getenv(envEtcdPeer),
		InitialCluster: peers, ClusterToken: "e2e", UnsafeNoFsync: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		return 1
	}
	fmt.Println("ready", srv.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Close()
	return 0
}

// etcdCluster is a three-member etcd cluster whose members run in their
// own processes, so a member can be killed with SIGKILL.
type etcdCluster struct {
	ps      *procs
	dir     string
	names   []string
	clients []string // client URLs
	peers   []string // peer URLs

	mu    sync.Mutex
	procs []*proc
}

// startEtcd starts an n-member cluster, retrying with fresh ports if one
// was taken by another process meanwhile.
func startEtcd(ps *procs, n int) (*etcdCluster, error) {
	var last error
	for attempt := range 3 {
		c := &etcdCluster{ps: ps, dir: filepath.Join(ps.dir, fmt.Sprintf("etcd-%d", attempt)), procs: make([]*proc, n)}
		for i := range n {
			cp, err1 := embedetcd.FreePort()
			pp, err2 := embedetcd.FreePort()
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("free port: %v %v", err1, err2)
			}
			c.names = append(c.names, fmt.Sprintf("m%d", i))
			c.clients = append(c.clients, fmt.Sprintf("http://127.0.0.1:%d", cp))
			c.peers = append(c.peers, fmt.Sprintf("http://127.0.0.1:%d", pp))
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.startMember(i)
			}()
		}
		wg.Wait()
		last = nil
		for _, err := range errs {
			if err != nil {
				last = err
			}
		}
		if last == nil {
			return c, nil
		}
		c.stopAll()
	}
	return nil, last
}

func (c *etcdCluster) startMember(i int) error {
	var cluster []string
	for j := range c.names {
		cluster = append(cluster, c.names[j]+"="+c.peers[j])
	}
	p, err := c.ps.start("etcd-"+c.names[i], []string{
		envRole + "=" + roleEtcd, envEtcdName + "=" + c.names[i],
		envEtcdDir + "=" + filepath.Join(c.dir, c.names[i]), envEtcdClient + "=" + c.clients[i],
		envEtcdPeer + "=" + c.peers[i], envEtcdCluster + "=" + strings.Join(cluster, ","),
	}, nil, 90*time.Second)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[i] = p
	c.mu.Unlock()
	return nil
}

// kill sends SIGKILL to member i.
func (c *etcdCluster) kill(i int) {
	c.mu.Lock()
	p := c.procs[i]
	c.procs[i] = nil
	c.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// restart starts member i again from its data dir.
func (c *etcdCluster) restart(i int) error { return c.startMember(i) }

func (c *etcdCluster) running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[i] != nil && c.procs[i].Alive()
}

func (c *etcdCluster) stopAll() {
	for i := range c.procs {
		c.mu.Lock()
		p := c.procs[i]
		c.mu.Unlock()
		if p != nil {
			p.Stop(10 * time.Second)
		}
	}
}

// leader returns the index of the member that leads, asking each running
// member for its status.
func (c *etcdCluster) leader(ctx context.Context) (int, error) {
	for {
		for i, url := range c.clients {
			if !c.running(i) {
				continue
			}
			cli, err := clientv3.New(etcdtest.ClientConfig(url))
			if err != nil {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, url)
			cancel()
			_ = cli.Close()
			if err == nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no etcd leader: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
