package cohort

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/transport"
	"github.com/cohort-go/cohort/ring"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Errors a caller sees when a message crosses nodes, re-exported from the
// actor package so that errors.Is works with either name.
var (
	// ErrNodeDown: the target's node left the cluster, cannot be reached,
	// or its connection broke while a call waited. Pending calls fail with
	// it at once, not at their deadline.
	ErrNodeDown = actor.ErrNodeDown
	// ErrNotDelivered comes with ErrNodeDown when the message certainly
	// did not reach its target: the node is leaving the cluster (it set
	// the message aside unread, or refused it) or has left it. Sending it
	// again, where the actor runs next, cannot make it run twice.
	ErrNotDelivered = actor.ErrNotDelivered
	// ErrMessageTooLarge: the encoded message exceeds
	// TransportConfig.MaxMessageSize; nothing was sent.
	ErrMessageTooLarge = actor.ErrMessageTooLarge
)

// TransportConfig configures the transport between nodes. Its zero value
// works: plain gRPC on a free loopback port, 4 MiB messages.
type TransportConfig struct {
	// ListenAddr is the address the transport listens on. Default
	// "127.0.0.1:0" (a free loopback port). To reach nodes on other hosts,
	// listen on a routable address and, if it differs from what peers
	// should dial (0.0.0.0, NAT), set Config.Addr.
	ListenAddr string

	// CA, Certificate and ServerName turn on mutual TLS: the node presents
	// Certificate to its peers, in both directions, and accepts only peers
	// whose certificate CA signed; a peer it does not trust is refused
	// (and the calls to it fail with ErrNodeDown). Certificate must be
	// valid for the address peers dial (an IP or DNS SAN), or set
	// ServerName to a name every node's certificate holds. All nodes of a
	// cluster must agree: a TLS node and a plain one cannot talk.
	CA          *x509.CertPool
	Certificate *tls.Certificate
	ServerName  string
	// CAFile, CertFile and KeyFile are PEM files for CA and Certificate,
	// used when those are nil.
	CAFile, CertFile, KeyFile string

	// MaxMessageSize bounds one encoded message or reply; larger ones fail
	// at the sender with ErrMessageTooLarge. Use the same value on every
	// node: a message over a peer's smaller limit breaks the stream to
	// it, the calls pending on that stream fail with ErrNodeDown saying
	// so, and its casts are lost. Default 4 MiB. The bound is on the encoding: a []byte field
	// of a JSON-encoded type grows by a third (base64), so a 3.5 MiB
	// payload in one does not fit; a protobuf message carries bytes as is.
	MaxMessageSize int
	// QueueBytes bounds the bytes waiting to be written to one peer: when
	// it is full, Call and Cast wait until their context ends (or fail with
	// actor.ErrBackpressure if FailFast), and Send fails at once. Default
	// 4 MiB, at least MaxMessageSize.
	QueueBytes int
	// FailFast: Call and Cast fail with actor.ErrBackpressure instead of
	// waiting when the queue to a peer is full.
	FailFast bool
	// DialTimeout bounds connecting to a peer. Default 5s.
	DialTimeout time.Duration
}

// tlsConfigs builds the server and client TLS configs, or nils for plain
// gRPC.
func (c TransportConfig) tlsConfigs() (server, client *tls.Config, err error) {
	ca, cert := c.CA, c.Certificate
	if ca == nil && c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: Transport.CAFile: %w", ErrInvalidConfig, err)
		}
		ca = x509.NewCertPool()
		if !ca.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%w: Transport.CAFile %s holds no PEM certificate", ErrInvalidConfig, c.CAFile)
		}
	}
	if cert == nil && (c.CertFile != "" || c.KeyFile != "") {
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, nil, fmt.Errorf("%w: Transport.CertFile and KeyFile go together", ErrInvalidConfig)
		}
		kp, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: Transport.CertFile/KeyFile: %w", ErrInvalidConfig, err)
		}
		cert = &kp
	}
	if ca == nil && cert == nil {
		if c.ServerName != "" {
			return nil, nil, fmt.Errorf("%w: Transport.ServerName %q is set, but TLS is off: it needs a CA and a certificate too", ErrInvalidConfig, c.ServerName)
		}
		return nil, nil, nil
	}
	if ca == nil || cert == nil {
		return nil, nil, fmt.Errorf("%w: transport TLS needs both a CA and a certificate (mutual TLS)", ErrInvalidConfig)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		RootCAs:      ca,
		ServerName:   c.ServerName,
	}
	return server, client, nil
}

// listenTransport opens the transport's listener and returns the address
// to publish in the member key: Config.Addr, or else the listener's.
func (n *Node) listenTransport() (string, error) {
	addr := n.cfg.Transport.ListenAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%w: Transport.ListenAddr %q: %w", ErrInvalidConfig, addr, err)
	}
	n.lis = lis
	if n.cfg.Addr != "" {
		return n.cfg.Addr, nil
	}
	return lis.Addr().String(), nil
}

// absentFor is how long a node found absent from etcd by refreshMember is
// not looked for again: calls to the Refs of a node gone for good cost
// etcd at most one read per node in that time.
const absentFor = time.Second

// memberRefreshBound bounds refreshMember, so that with etcd down a call to
// a Ref of an unknown node fails with ErrNodeDown within it.
const memberRefreshBound = 2 * time.Second

// refreshMember brings the ring up to date when a message is for a node it
// does not know. A Ref or a registered name can reach this node before the
// ring's watch has shown the node that made it join, so the ring's view
// alone would turn a call to a node that just joined into ErrNodeDown. A
// linearizable read of the member key says whether the node is a member
// now; if it is, the ring is waited for up to that read's revision. Both
// are bounded by ctx and by the node's request bound.
func (n *Node) refreshMember(ctx context.Context, id string) {
	n.absentMu.Lock()
	at, seen := n.absent[id]
	n.absentMu.Unlock()
	if seen && time.Since(at) < absentFor {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, memberRefreshBound)
	defer cancel()
	resp, err := n.client.Get(ctx, ring.MemberKey(n.cfg.Prefix, id), clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	if len(resp.Kvs) > 0 {
		_ = n.ring.WaitRevision(ctx, resp.Header.Revision)
		return
	}
	now := time.Now()
	n.absentMu.Lock()
	defer n.absentMu.Unlock()
	for k, t := range n.absent {
		if now.Sub(t) >= absentFor {
			delete(n.absent, k)
		}
	}
	n.absent[id] = now
}

// startTransport serves the listener, plugs the transport into the actor
// system for Refs of other nodes, and follows membership so that calls to
// a node that leaves fail at once.
func (n *Node) startTransport() error {
	tc := n.cfg.Transport
	tr, err := transport.New(transport.Config{
		Node:    n.cfg.NodeID,
		Cluster: n.cfg.Prefix,
		System:  n.sys,
		Lookup: func(id string) (string, bool) {
			m, ok := n.ring.Member(id)
			return m.Addr, ok && m.Addr != ""
		},
		Refresh:        n.refreshMember,
		Explain:        n.explainPeer,
		ServerTLS:      n.serverTLS,
		ClientTLS:      n.clientTLS,
		MaxMessageSize: tc.MaxMessageSize,
		QueueBytes:     tc.QueueBytes,
		FailFast:       tc.FailFast,
		DialTimeout:    tc.DialTimeout,
		Logger:         n.log,
	})
	if err != nil {
		return fmt.Errorf("%w: transport: %w", ErrInvalidConfig, err)
	}
	n.transport = tr
	tr.Serve(n.lis)
	n.lis = nil
	n.sys.SetRemote(tr)
	changes, cancel := n.ring.Subscribe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		for {
			select {
			case c, ok := <-changes:
				if !ok {
					return
				}
				var left []string
				for _, m := range c.Left {
					if m.ID != n.cfg.NodeID {
						left = append(left, m.ID)
					}
				}
				n.peersLeft(left)
				for _, m := range c.Joined {
					if m.ID != n.cfg.NodeID && m.TLS != n.member.TLS {
						n.log.Warn("a node joined that cannot exchange messages with this one", zap.String("peer", m.ID),
							zap.String("why", n.explainPeer(m.ID)))
					}
				}
			case <-n.ctx.Done():
				return
			}
		}
	}()
	return nil
}

// peersLeft tells the transport that nodes left, failing what is pending
// on them at once, except for those already back: their member keys exist
// again. The ring and the supervisors watch etcd on separate streams, so
// the leave of a node that lost its lease and rejoined at once can reach
// the ring after a caller has already sent to the node's new instance;
// the stream to the node is healthy, and what is pending on it will be
// answered. One read of the member keys, bounded by a second, serves the
// whole batch; if it fails, every node in it is taken as gone.
func (n *Node) peersLeft(nodes []string) {
	if len(nodes) == 0 {
		return
	}
	back := map[string]bool{}
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	resp, err := n.client.Get(ctx, ring.MembersPrefix(n.cfg.Prefix), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	cancel()
	if err == nil {
		for _, kv := range resp.Kvs {
			back[strings.TrimPrefix(string(kv.Key), ring.MembersPrefix(n.cfg.Prefix))] = true
		}
	}
	for _, node := range nodes {
		if back[node] {
			n.log.Info("node left and is back", zap.String("peer", node))
			continue
		}
		n.log.Info("node left", zap.String("peer", node))
		n.transport.NodeLeft(node)
	}
}

// explainPeer says what this node knows of why messages to node fail: a
// transport TLS setting that differs from this node's.
func (n *Node) explainPeer(node string) string {
	m, ok := n.ring.Member(node)
	switch {
	case !ok || m.TLS == n.member.TLS:
		return ""
	case m.TLS:
		return node + " uses TLS on its transport and this node does not: set TransportConfig's CA and Certificate alike on every node"
	default:
		return "this node uses TLS on its transport and " + node + " does not: set TransportConfig's CA and Certificate alike on every node"
	}
}

// stopTransport closes the transport: calls other nodes have pending here
// fail with ErrNodeDown on their side, and ours to them likewise. Node.Stop
// runs it after the local actors stopped (so calls they were answering
// got their replies out) and before the lease is revoked.
func (n *Node) stopTransport() {
	if n.transport != nil {
		n.transport.Close()
	}
	if n.lis != nil {
		_ = n.lis.Close()
		n.lis = nil
	}
}

// CallName calls the actor registered under name in the local name table
// of node — not the global registry — as Erlang's {Name, Node}. It fails
// with an error wrapping actor.ErrInvalidName (registry.ErrInvalidName is
// the same error) when node is not a node id or name is not a valid actor
// name, with one wrapping actor.ErrNotFound when no actor holds the name
// there, with ErrStopped on a stopped node, and otherwise behaves as Call.
func (n *Node) CallName(ctx context.Context, node, name string, msg any) (any, error) {
	if err := actor.ValidateName(node); err != nil || strings.Contains(node, "/") {
		return nil, fmt.Errorf("%w: CallName: node %q is not a node id (a non-empty name of printable characters without '/', at most %d bytes)", actor.ErrInvalidName, node, actor.MaxNameLen)
	}
	if err := actor.ValidateName(name); err != nil {
		return nil, fmt.Errorf("CallName on node %s: %w", node, err)
	}
	if n.isStopped() {
		return nil, ErrStopped
	}
	if node == n.cfg.NodeID {
		ref, ok := n.sys.Whereis(name)
		if !ok {
			return nil, fmt.Errorf("%w: no actor registered as %q on node %s", actor.ErrNotFound, name, node)
		}
		return n.sys.Call(ctx, ref, msg)
	}
	if n.transport == nil {
		return nil, ErrStopped
	}
	return n.transport.CallName(ctx, node, name, msg)
}
