// Package transport carries actor messages between the nodes of a cohort
// cluster over gRPC: one long-lived bidirectional stream from each node to
// each peer it sends to, carrying that node's calls, casts, sends and
// monitor requests one way and the replies and down notices back, in
// batched frames. It implements actor.Remote.
package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cohort-go/cohort/actor"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// DefaultMaxMessageSize is the default limit on one encoded message.
const DefaultMaxMessageSize = 4 << 20

// Config configures a Transport. Node, Cluster, System and Lookup are
// required; every other field has a working default.
type Config struct {
	// Node is this node's id: the Node of its Refs.
	Node string
	// Cluster is the cluster's key prefix. A stream from a node of another
	// cluster is refused.
	Cluster string
	// System is the actor system that serves inbound messages.
	System *actor.System
	// Lookup returns the transport address of a member node, and false
	// when the node is not a member (then sends to it fail with
	// actor.ErrNodeDown).
	Lookup func(node string) (addr string, ok bool)
	// Refresh, if set, is called when a call, cast or monitor finds no
	// session to a node that Lookup does not know. It brings what Lookup
	// answers up to date with the cluster as of now, within ctx, so that a
	// node that joined a moment ago (its Refs can travel faster than the
	// news of its joining) is found. Send and a kill never call it: they
	// never wait.
	Refresh func(ctx context.Context, node string)
	// Explain, if set, says what the node knows of why a dial to node
	// failed (a configuration that differs from this node's, say); it is
	// added to the error.
	Explain func(node string) string
	// ServerTLS, if set, makes the listener speak TLS; set ClientCAs and
	// ClientAuth to tls.RequireAndVerifyClientCert to refuse peers whose
	// certificate the CA did not sign.
	ServerTLS *tls.Config
	// ClientTLS, if set, makes dials to peers use TLS, with this node's
	// client certificate and the RootCAs that must have signed the peers'.
	ClientTLS *tls.Config
	// MaxMessageSize bounds one encoded message or reply, in bytes. Larger
	// ones fail at the sender with actor.ErrMessageTooLarge. Use the same
	// value on every node. Default DefaultMaxMessageSize.
	MaxMessageSize int
	// QueueBytes bounds the bytes waiting to be written to one peer. A
	// Call or Cast finding the queue full waits for room until its context
	// ends (or fails at once with actor.ErrBackpressure if FailFast is
	// set); Send never waits. Default 4 MiB, at least MaxMessageSize.
	QueueBytes int
	// FailFast makes Call and Cast fail with actor.ErrBackpressure, rather
	// than wait, when the queue to the peer is full.
	FailFast bool
	// DialTimeout bounds connecting to a peer and its accepting the stream.
	// Default 5s.
	DialTimeout time.Duration
	// Logger receives the transport's logs. Default: none.
	Logger *zap.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Node == "" || c.Cluster == "" || c.System == nil || c.Lookup == nil {
		return c, fmt.Errorf("%w: Node, Cluster, System and Lookup are required", ErrInvalidConfig)
	}
	if c.MaxMessageSize < 0 || c.QueueBytes < 0 || c.DialTimeout < 0 {
		return c, fmt.Errorf("%w: MaxMessageSize, QueueBytes and DialTimeout must not be negative", ErrInvalidConfig)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 4 << 20
	}
	c.QueueBytes = max(c.QueueBytes, c.MaxMessageSize)
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c, nil
}

// maxErrorMessage bounds the text of an error sent to a peer.
const maxErrorMessage = 16 << 10

// Transport is a node's endpoint: it serves streams from peers and keeps
// one outbound stream per peer it sends to. It implements actor.Remote;
// plug it in with System.SetRemote.
type Transport struct {
	cfg    Config
	log    *zap.Logger
	sys    *actor.System
	server *grpc.Server
	frame  int // largest frame accepted

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool

	laneMu   sync.Mutex
	lanes    map[string]*lane
	draining bool // guarded by laneMu: Drain was called
}

// New returns a transport that serves nothing yet; call Serve. It fails
// with ErrInvalidConfig when a required field is missing.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, log: cfg.Logger.Named("transport"), sys: cfg.System,
		peers: make(map[string]*peer), lanes: make(map[string]*lane)}
	t.frame = cfg.MaxMessageSize + maxErrorMessage + frameSize + 4096
	t.ctx, t.cancel = context.WithCancel(context.Background())
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(frameCodec{}),
		grpc.MaxRecvMsgSize(t.frame),
		grpc.MaxSendMsgSize(t.frame),
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(4 << 20),
		grpc.WaitForHandlers(true),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.ConnectionTimeout(cfg.DialTimeout),
	}
	if cfg.ServerTLS != nil {
		opts = append(opts, grpc.Creds(loggedCreds{credentials.NewTLS(cfg.ServerTLS), t.log}))
	}
	t.server = grpc.NewServer(opts...)
	t.server.RegisterService(serviceDesc(t.serveStream), nil)
	return t, nil
}

// loggedCreds logs the connections the server's TLS refuses: an untrusted
// or expired certificate, no certificate, or a peer not speaking TLS. The
// refused peer learns little (a broken pipe, at best the alert); the log
// says which address was refused and why.
type loggedCreds struct {
	credentials.TransportCredentials
	log *zap.Logger
}

func (c loggedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.log.Warn("refused a connection: TLS handshake failed (is the peer's certificate signed by this cluster's CA, valid, and is TLS on for it?)",
			zap.Stringer("remote", conn.RemoteAddr()), zap.Error(err))
	}
	return nc, info, err
}

// ClientHandshake logs a failed handshake with a peer this node dials:
// one whose certificate it refuses, or that refuses its own.
func (c loggedCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	if err != nil && ctx.Err() == nil {
		c.log.Warn("TLS handshake with a peer failed (is its certificate signed by this cluster's CA, valid for the address it publishes, and does it trust this node's?)",
			zap.Stringer("remote", conn.RemoteAddr()), zap.Error(err))
	}
	return nc, info, err
}

func (c loggedCreds) Clone() credentials.TransportCredentials {
	return loggedCreds{c.TransportCredentials.Clone(), c.log}
}

// Serve serves peers' streams on lis, in the background, until Close.
func (t *Transport) Serve(lis net.Listener) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.server.Serve(lis); err != nil {
			t.log.Warn("transport listener stopped", zap.Error(err))
		}
	}()
}

// Close stops the transport: every outbound stream ends, pending calls on
// them fail with actor.ErrNodeDown and remote monitors fire; inbound
// streams are cut, and Close waits for their handlers and every goroutine
// of the transport. Later sends fail with actor.ErrNodeDown. Close is
// idempotent.
func (t *Transport) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return
	}
	t.closed = true
	peers := t.peers
	t.peers = nil
	t.mu.Unlock()
	t.cancel()
	for _, p := range peers {
		p.close(fmt.Errorf("%w: %s: transport of %s closed", actor.ErrNodeDown, p.node, t.cfg.Node))
	}
	t.server.Stop()
	t.wg.Wait()
}

// drainWait bounds Drain: a peer that has not ended its stream by then,
// after it was told the stream is drained, is left to Close.
const drainWait = 2 * time.Second

// Drain readies the node to leave the cluster; call it once its actor
// system has stopped, before the node leaves the member list. New streams
// are refused, and each inbound stream stops taking envelopes: once the
// calls it took are answered it tells its sender which was the last, and
// the sender fails its calls after that one with actor.ErrNotDelivered
// (wrapped with actor.ErrNodeDown), as it does every call of a refused
// stream, rather than with a bare actor.ErrNodeDown. Such a call was
// certainly not handled, so a caller may send it to where the actor runs
// next. Casts and sends arriving after Drain are dropped. Drain returns
// when every sender has ended its stream, ctx ends, or drainWait passes;
// outbound streams are unaffected, and Close still closes the transport.
func (t *Transport) Drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, drainWait)
	defer cancel()
	t.laneMu.Lock()
	t.draining = true
	ins := make([]*inbound, 0, len(t.lanes))
	for _, l := range t.lanes {
		if l.cur != nil {
			ins = append(ins, l.cur)
		}
	}
	t.laneMu.Unlock()
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.drain(ctx)
		}()
	}
	wg.Wait()
}

// NodeLeft tells the transport that node left the cluster: its stream is
// closed, calls pending on it fail with actor.ErrNodeDown and monitors of
// its actors fire at once.
func (t *Transport) NodeLeft(node string) {
	t.mu.Lock()
	p := t.peers[node]
	delete(t.peers, node)
	t.mu.Unlock()
	if p != nil {
		p.close(fmt.Errorf("%w: %s left the cluster", actor.ErrNodeDown, node))
	}
}

// peer returns the peer for node, creating it.
func (t *Transport) peer(node string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("%w: %s: transport of %s closed", actor.ErrNodeDown, node, t.cfg.Node)
	}
	p := t.peers[node]
	if p == nil {
		p = &peer{t: t, node: node}
		t.peers[node] = p
	}
	return p, nil
}

// session returns the session to node. With a ctx (every path but Send
// and a kill), a node Lookup does not know is first looked for with
// Refresh.
func (t *Transport) session(ctx context.Context, node string) (*session, error) {
	if node == t.cfg.Node {
		return nil, fmt.Errorf("%w: %s is this node", actor.ErrInvalidRef, node)
	}
	p, err := t.peer(node)
	if err != nil {
		return nil, undelivered(err)
	}
	if s := p.cur.Load(); s != nil {
		return s, nil
	}
	if ctx != nil && t.cfg.Refresh != nil {
		if _, ok := t.cfg.Lookup(node); !ok {
			t.cfg.Refresh(ctx, node)
		}
	}
	return p.session()
}

func (t *Transport) encode(e *envelope, msg any, scratch []byte) ([]byte, error) {
	typ, b, err := actor.EncodeMessage(scratch, msg)
	if err != nil {
		return b, err
	}
	if len(b) > t.cfg.MaxMessageSize {
		return b, fmt.Errorf("%w: %T encodes to %d bytes, limit is %d (transport MaxMessageSize)",
			actor.ErrMessageTooLarge, msg, len(b), t.cfg.MaxMessageSize)
	}
	e.typ, e.payload = typ, b
	return b, nil
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// putScratch returns a scratch buffer to the pool, unless a large message
// grew it: those are left to the garbage collector.
func putScratch(b *[]byte) {
	if cap(*b) <= 64<<10 {
		scratchPool.Put(b)
	}
}

func (t *Transport) mode() pushMode {
	if t.cfg.FailFast {
		return failFast
	}
	return block
}

// Call sends msg to the actor at to and waits for its reply. The caller's
// remaining deadline travels with the call. It fails at the sender with
// actor.ErrUnregisteredType or actor.ErrMessageTooLarge; with
// actor.ErrNodeDown at once when the node is not a member, cannot be
// reached, or its connection breaks or it leaves while the call waits;
// with ctx's error when ctx ends first (a reply arriving later is
// dropped). An error returned by the remote handler comes back with its
// message, and with its identity for the actor package's sentinels and
// those registered with actor.RegisterError.
func (t *Transport) Call(ctx context.Context, to actor.Ref, msg any) (any, error) {
	return t.call(ctx, kindCall, to, msg)
}

// Taken delivers a cast (with info, a send) answered like a call, once the
// actor has taken it from its mailbox (actor.System.CastTaken).
func (t *Transport) Taken(ctx context.Context, to actor.Ref, msg any, info bool) error {
	k := kindCastTaken
	if info {
		k = kindSendTaken
	}
	_, err := t.call(ctx, k, to, msg)
	return err
}

func (t *Transport) call(ctx context.Context, k kind, to actor.Ref, msg any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("actor: call %v: %w", to, err)
	}
	s, err := t.session(ctx, to.Node)
	if err != nil {
		return nil, err
	}
	e := envelope{kind: k, ref: to}
	if d, ok := ctx.Deadline(); ok {
		e.deadline = int64(time.Until(d))
		if e.deadline <= 0 {
			return nil, fmt.Errorf("actor: call %v: %w", to, context.DeadlineExceeded)
		}
	}
	sp := scratchPool.Get().(*[]byte)
	defer putScratch(sp)
	if *sp, err = t.encode(&e, msg, (*sp)[:0]); err != nil {
		return nil, err
	}
	return s.call(ctx, &e, t.mode())
}

// Stop stops the actor at to with reason, as actor.System.Stop does on its
// node, and returns once it has exited (its Terminate run, or killed after
// its shutdown timeout), or when ctx ends. With kill, the actor is killed
// (actor.System.Kill: no Terminate), and Stop returns once the kill is
// queued, failing with actor.ErrBackpressure rather than wait for room,
// as Send does. It fails as Call does.
func (t *Transport) Stop(ctx context.Context, to actor.Ref, reason error, kill bool) error {
	if kill {
		// As Send: a kill never waits, for room or for a refresh.
		s, err := t.session(nil, to.Node)
		if err != nil {
			return err
		}
		return s.q.push(ctx, &envelope{kind: kindKill, ref: to}, failFast)
	}
	s, err := t.session(ctx, to.Node)
	if err != nil {
		return err
	}
	e := envelope{kind: kindStop, ref: to, err: actor.ErrorToWire(reason)}
	if d, ok := ctx.Deadline(); ok {
		e.deadline = max(int64(time.Until(d)), 1)
	}
	_, err = s.call(ctx, &e, t.mode())
	return err
}

// Cast sends msg to the actor at to without waiting for it to be handled.
// It fails at the sender like Call; when the queue to the node is full it
// waits for room until ctx ends (or fails with actor.ErrBackpressure when
// the transport is configured to fail fast). A nil error means the cast is
// queued, not that it arrived: a cast the receiver cannot deliver (no such
// actor, unknown type) is logged there.
func (t *Transport) Cast(ctx context.Context, to actor.Ref, msg any) error {
	return t.oneWay(ctx, kindCast, to, msg, t.mode())
}

// Send is Cast for HandleInfo, and never waits: a full queue fails with
// actor.ErrBackpressure.
func (t *Transport) Send(to actor.Ref, msg any) error {
	return t.oneWay(context.Background(), kindSend, to, msg, failFast)
}

func (t *Transport) oneWay(ctx context.Context, k kind, to actor.Ref, msg any, mode pushMode) error {
	sctx := ctx
	if k == kindSend {
		sctx = nil
	}
	s, err := t.session(sctx, to.Node)
	if err != nil {
		return err
	}
	e := envelope{kind: k, ref: to}
	sp := scratchPool.Get().(*[]byte)
	defer putScratch(sp)
	if *sp, err = t.encode(&e, msg, (*sp)[:0]); err != nil {
		return err
	}
	return s.q.push(ctx, &e, mode)
}

// Monitor calls down once when the actor at target exits, with its exit
// reason, or when its node goes away or the connection to it breaks, with
// an error wrapping actor.ErrNodeDown. cancel stops the monitor; after it
// returns, down is not called.
func (t *Transport) Monitor(target actor.Ref, down func(reason error)) (cancel func()) {
	ctx, stop := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	s, err := t.session(ctx, target.Node)
	stop()
	if err != nil {
		down(err)
		return func() {}
	}
	return s.monitor(target, down)
}

// CallName calls the actor registered under name in the local name table
// of node (as Erlang's {Name, Node}). It behaves as Call.
func (t *Transport) CallName(ctx context.Context, node, name string, msg any) (any, error) {
	if err := actor.ValidateName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("actor: call %s@%s: %w", name, node, err)
	}
	s, err := t.session(ctx, node)
	if err != nil {
		return nil, err
	}
	e := envelope{kind: kindCall, name: name}
	if d, ok := ctx.Deadline(); ok {
		e.deadline = max(int64(time.Until(d)), 1)
	}
	sp := scratchPool.Get().(*[]byte)
	defer putScratch(sp)
	if *sp, err = t.encode(&e, msg, (*sp)[:0]); err != nil {
		return nil, err
	}
	return s.call(ctx, &e, t.mode())
}

var _ actor.Remote = (*Transport)(nil)
