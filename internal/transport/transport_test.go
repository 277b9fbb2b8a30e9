package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/testcert"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// book is the address book the test nodes share in place of the ring.
type book struct {
	mu    sync.Mutex
	addrs map[string]string
}

func (b *book) lookup(node string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.addrs[node]
	return a, ok
}

func (b *book) set(node, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs[node] = addr
}

type testNode struct {
	sys  *actor.System
	tr   *Transport
	addr string
}

func (b *book) del(node string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.addrs, node)
}

func newBook() *book { return &book{addrs: make(map[string]string)} }

func startNode(t testing.TB, b *book, cfg Config) *testNode {
	t.Helper()
	sys := actor.NewSystem(actor.Config{Node: cfg.Node})
	cfg.System = sys
	if cfg.Cluster == "" {
		cfg.Cluster = "/test"
	}
	cfg.Lookup = b.lookup
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr.Serve(lis)
	sys.SetRemote(tr)
	n := &testNode{sys: sys, tr: tr, addr: lis.Addr().String()}
	b.set(cfg.Node, n.addr)
	t.Cleanup(func() {
		tr.Close()
		_ = sys.Shutdown(context.Background())
	})
	return n
}

type echo struct{}

func (echo) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func spawn(t testing.TB, n *testNode, a actor.Actor) actor.Ref {
	t.Helper()
	ref, err := n.sys.Spawn(context.Background(), a, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestCallRoundTripAndProto(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	ref := spawn(t, n, echo{})
	ctx := ctxTimeout(t, 10*time.Second)
	for _, msg := range []any{"hi", int64(-7), 42, 3.5, true, []byte{1, 2}, wrapperspb.Int64(9), nil, ref} {
		v, err := a.sys.Call(ctx, ref, msg)
		if err != nil {
			t.Fatalf("call %T: %v", msg, err)
		}
		if m, ok := msg.(*wrapperspb.Int64Value); ok {
			if got, ok := v.(*wrapperspb.Int64Value); !ok || got.Value != m.Value {
				t.Fatalf("proto round trip: %v", v)
			}
			continue
		}
		if b, ok := msg.([]byte); ok {
			if string(v.([]byte)) != string(b) {
				t.Fatalf("bytes: %v", v)
			}
			continue
		}
		if v != msg {
			t.Fatalf("call %T: got %#v", msg, v)
		}
	}
	v, err := a.tr.CallName(ctx, "b", "missing", "x")
	if !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("CallName to missing name = %v, %v", v, err)
	}
	if err := n.sys.Register("svc", ref); err != nil {
		t.Fatal(err)
	}
	if v, err := a.tr.CallName(ctx, "b", "svc", "named"); err != nil || v != "named" {
		t.Fatalf("CallName = %v, %v", v, err)
	}
}

func init() {
	actor.MustRegisterType[*wrapperspb.Int64Value]("google.protobuf.Int64Value")
}

// sendRaw opens a stream to n as node from, in cluster, and sends frame.
func sendRaw(t *testing.T, n *testNode, cluster, from, to string, frame []byte) (grpc.ClientStream, error) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx := metadata.NewOutgoingContext(ctxTimeout(t, 10*time.Second), metadata.Pairs(mdCluster, cluster, mdFrom, from, mdTo, to))
	s, err := cc.NewStream(ctx, &streamDesc, methodName)
	if err != nil {
		return nil, err
	}
	if err := awaitAccept(s); err != nil {
		return nil, err
	}
	buf := append([]byte(nil), frame...)
	if err := s.SendMsg(&outFrame{buf: sliceBuf(buf)}); err != nil {
		return nil, err
	}
	return s, nil
}

func TestUnknownTypeAtReceiverIsReportedToCaller(t *testing.T) {
	b := newBook()
	n := startNode(t, b, Config{Node: "b"})
	ref := spawn(t, n, echo{})
	frame := appendEnvelope(nil, &envelope{kind: kindCall, id: 7, ref: ref, typ: "not.registered", payload: []byte("{}")})
	s, err := sendRaw(t, n, "/test", "x", "b", frame)
	if err != nil {
		t.Fatal(err)
	}
	var f inFrame
	if err := s.RecvMsg(&f); err != nil {
		t.Fatal(err)
	}
	var e envelope
	if _, ok, err := nextEnvelope(f.b, &e); !ok || err != nil {
		t.Fatalf("reply frame: %v %v", ok, err)
	}
	got := actor.ErrorFromWire(e.err)
	if e.kind != kindReply || e.id != 7 || !errors.Is(got, actor.ErrUnknownType) || !strings.Contains(got.Error(), "not.registered") {
		t.Fatalf("reply %v id %d err %v", e.kind, e.id, got)
	}
}

func TestStreamFromAnotherClusterIsRefused(t *testing.T) {
	b := newBook()
	n := startNode(t, b, Config{Node: "b", Cluster: "/prod"})
	if _, err := sendRaw(t, n, "/staging", "x", "b", nil); err == nil || !strings.Contains(err.Error(), "/staging") {
		t.Fatalf("stream from another cluster: %v", err)
	}
	if _, err := sendRaw(t, n, "/prod", "x", "c", nil); err == nil || !strings.Contains(err.Error(), "not \"c\"") {
		t.Fatalf("stream for another node: %v", err)
	}
	// Through the transport: a node of another cluster gets ErrNodeDown
	// naming the refusal.
	other := startNode(t, b, Config{Node: "a", Cluster: "/staging"})
	ref := spawn(t, n, echo{})
	_, err := other.sys.Call(ctxTimeout(t, 10*time.Second), ref, "x")
	if !errors.Is(err, actor.ErrNodeDown) || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "/prod") {
		t.Fatalf("call across clusters = %v", err)
	}
}

func TestGarbageOnThePortDoesNotHurtTheNode(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	ref := spawn(t, n, echo{})
	junk := make([]byte, 64<<10)
	_, _ = rand.Read(junk)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", n.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if i%2 == 0 {
				_, _ = c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			}
			_, _ = c.Write(junk[:1+i*4000])
		}()
	}
	wg.Wait()
	// Malformed frames inside a well-formed stream end that stream only.
	for _, frame := range [][]byte{{0xff, 0xff, 0xff}, {0x0a, 0x80}, {0x0a, 0x02, 0x08, 0x63}, junk[:1000]} {
		s, err := sendRaw(t, n, "/test", "x", "b", frame)
		if err != nil {
			continue
		}
		var f inFrame
		if err := s.RecvMsg(&f); err == nil {
			t.Fatalf("malformed frame %x answered", frame[:min(len(frame), 8)])
		}
	}
	if v, err := a.sys.Call(ctxTimeout(t, 10*time.Second), ref, "still here"); err != nil || v != "still here" {
		t.Fatalf("call after garbage = %v, %v", v, err)
	}
}

func TestDecodeNeverPanics(t *testing.T) {
	junk := make([]byte, 4096)
	for i := range 2000 {
		_, _ = rand.Read(junk)
		frame := junk[:i%len(junk)]
		var e envelope
		for {
			rest, ok, err := nextEnvelope(frame, &e)
			if err != nil || !ok {
				break
			}
			frame = rest
		}
	}
	deep := &actor.WireError{Message: "x"}
	for range maxErrorDepth + 2 {
		deep = &actor.WireError{Code: "exit", Reason: deep}
	}
	frame := appendEnvelope(nil, &envelope{kind: kindReply, id: 1, err: deep})
	var e envelope
	if _, _, err := nextEnvelope(frame, &e); !errors.Is(err, ErrMalformed) {
		t.Fatalf("deeply nested error = %v", err)
	}
}

// echoPair starts nodes a and b with cfgA and cfgB (their Node set here)
// and an echo actor on b, and returns a, b, the echo's Ref and a context
// for the test.
func echoPair(t *testing.T, cfgA, cfgB Config) (a, b *testNode, ref actor.Ref, ctx context.Context) {
	t.Helper()
	bk := newBook()
	cfgA.Node, cfgB.Node = "a", "b"
	a, b = startNode(t, bk, cfgA), startNode(t, bk, cfgB)
	return a, b, spawn(t, b, echo{}), ctxTimeout(t, 30*time.Second)
}

func TestMessageTooLargeFailsAtSender(t *testing.T) {
	a, _, ref, ctx := echoPair(t, Config{MaxMessageSize: 1 << 20}, Config{MaxMessageSize: 1 << 20})
	big := make([]byte, 1<<20+1)
	if _, err := a.sys.Call(ctx, ref, big); !errors.Is(err, actor.ErrMessageTooLarge) {
		t.Fatalf("oversized call = %v", err)
	}
	if err := a.sys.Cast(ctx, ref, big); !errors.Is(err, actor.ErrMessageTooLarge) {
		t.Fatalf("oversized cast = %v", err)
	}
	v, err := a.sys.Call(ctx, ref, big[:1<<20])
	if err != nil || len(v.([]byte)) != 1<<20 {
		t.Fatalf("call at the limit = %v", err)
	}
}

// A node whose MaxMessageSize is larger than its peer's can send it a
// message the peer refuses; the stream breaks, and the error says why and
// what to do.
func TestMismatchedMessageLimitsSayWhatToDo(t *testing.T) {
	a, _, ref, ctx := echoPair(t, Config{MaxMessageSize: 8 << 20}, Config{MaxMessageSize: 1 << 20})
	_, err := a.sys.Call(ctx, ref, make([]byte, 3<<20))
	if !errors.Is(err, actor.ErrNodeDown) || !strings.Contains(err.Error(), "use the same value on every node") {
		t.Fatalf("call larger than the peer's limit = %v", err)
	}
	if v, err := a.sys.Call(ctx, ref, "small"); err != nil || v != "small" {
		t.Fatalf("call after the stream broke = %v, %v", v, err)
	}
}

type sink struct {
	mu   sync.Mutex
	n    int
	gate chan struct{}
}

func (s *sink) HandleCall(_ *actor.Context, _ any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, nil
}

func (s *sink) HandleCast(_ *actor.Context, _ any) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return nil
}

func TestCastFloodIsBoundedBySendQueue(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a", QueueBytes: 64 << 10})
	n := startNode(t, b, Config{Node: "b"})
	s := &sink{gate: make(chan struct{})}
	ref, err := n.sys.Spawn(context.Background(), s, actor.Options{MailboxSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	// The receiver's mailbox is full and its actor stuck: the stream backs
	// up, then a's queue fills and casts wait.
	ctx := ctxTimeout(t, 20*time.Second)
	payload := make([]byte, 1000)
	sent := 0
	for {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := a.sys.Cast(cctx, ref, payload)
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("cast %d: %v", sent, err)
			}
			break
		}
		sent++
		if sent > 100_000 {
			t.Fatal("casts never pushed back")
		}
	}
	if err := a.sys.Send(ref, payload); !errors.Is(err, actor.ErrBackpressure) && !errors.Is(err, actor.ErrUnhandled) {
		t.Fatalf("send on a full queue = %v", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d casts of 1 KB queued before the sender was pushed back; heap %d MB", sent, ms.HeapInuse>>20)
	close(s.gate)
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := a.sys.Call(ctx, ref, "count")
		if err != nil {
			t.Fatal(err)
		}
		if v.(int) == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %v of %d casts", v, sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A caller may write its call to the stream itself; it must still return
// when its context ends while the peer has stopped reading, whether the
// stream is backed up with the queue not yet full, or the queue is full.
func TestCallsReturnAtTheirContextWhenPeerStopsReading(t *testing.T) {
	for _, tc := range []struct {
		name  string
		casts int // of 1 KB each, before the calls
	}{
		{"stream window full", 1040},
		{"stream backed up", 1500},
		{"queue full", 6000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBook()
			a := startNode(t, b, Config{Node: "a", QueueBytes: 2 << 20})
			n := startNode(t, b, Config{Node: "b"})
			s := &sink{gate: make(chan struct{})}
			stuck, err := n.sys.Spawn(context.Background(), s, actor.Options{MailboxSize: 10})
			if err != nil {
				t.Fatal(err)
			}
			target := spawn(t, n, echo{})
			ctx := ctxTimeout(t, 30*time.Second)
			payload := make([]byte, 1000)
			sent := 0
			for range tc.casts {
				cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				err := a.sys.Cast(cctx, stuck, payload)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				sent++
			}
			const callers = 4
			const wait = 200 * time.Millisecond
			errs := make(chan error, callers)
			start := time.Now()
			for range callers {
				go func() {
					cctx, cancel := context.WithTimeout(ctx, wait)
					defer cancel()
					_, err := a.sys.Call(cctx, target, "ping")
					errs <- err
				}()
			}
			for range callers {
				if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("call to a peer that stopped reading = %v", err)
				}
			}
			if d := time.Since(start); d > wait+2*time.Second {
				t.Fatalf("calls returned %v after they started, their context ended after %v", d, wait)
			}
			close(s.gate)
			deadline := time.Now().Add(20 * time.Second)
			for {
				v, err := a.sys.Call(ctx, stuck, "count")
				if err != nil {
					t.Fatal(err)
				}
				if v.(int) == sent {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("received %v of %d casts", v, sent)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestPendingCallsFailWhenPeerClosesOrLeaves(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	stuck := spawn(t, n, actor.Func(func(ctx *actor.Context, _ any) (any, error) {
		ctx.DeferReply()
		return nil, nil
	}))
	ctx := ctxTimeout(t, 30*time.Second)
	errs := make(chan error, 1)
	go func() { _, err := a.sys.Call(ctx, stuck, "wait"); errs <- err }()
	_, down := a.sys.Monitor(stuck)
	// Wait until the call is on b, then leave.
	etcdtest.WaitFor(t, 10*time.Second, 2*time.Millisecond, "the call to be pending", func() bool { return a.tr.pendingCalls("b") == 1 })
	start := time.Now()
	b.del("b")
	a.tr.NodeLeft("b")
	if err := <-errs; !errors.Is(err, actor.ErrNodeDown) || time.Since(start) > 2*time.Second {
		t.Fatalf("pending call after leave = %v after %v", err, time.Since(start))
	}
	if d := <-down; !errors.Is(d.Reason, actor.ErrNodeDown) {
		t.Fatalf("down after leave = %v", d.Reason)
	}
	if _, err := a.sys.Call(ctx, stuck, "x"); !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("call after leave = %v", err)
	}
}

func mtls(ca *testcert.CA, cert tls.Certificate, trust *x509.CertPool) Config {
	return Config{
		ServerTLS: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientCAs: trust, ClientAuth: tls.RequireAndVerifyClientCert},
		ClientTLS: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: trust},
	}
}

func TestMutualTLSRefusesUntrustedPeer(t *testing.T) {
	good, evil := testcert.NewCA(t, "cluster-ca"), testcert.NewCA(t, "other-ca")
	b := newBook()
	cfgA := mtls(good, good.Issue(t, "a"), good.Pool)
	cfgA.Node = "a"
	coreA, logsA := observer.New(zap.WarnLevel)
	cfgA.Logger = zap.New(coreA)
	cfgB := mtls(good, good.Issue(t, "b"), good.Pool)
	cfgB.Node = "b"
	core, logs := observer.New(zap.WarnLevel)
	cfgB.Logger = zap.New(core)
	// m presents a certificate the cluster CA did not sign, but trusts it.
	cfgM := mtls(evil, evil.Issue(t, "m"), good.Pool)
	cfgM.Node = "m"
	a, n, m := startNode(t, b, cfgA), startNode(t, b, cfgB), startNode(t, b, cfgM)
	ref := spawn(t, n, echo{})
	ctx := ctxTimeout(t, 10*time.Second)
	if v, err := a.sys.Call(ctx, ref, "trusted"); err != nil || v != "trusted" {
		t.Fatalf("trusted call = %v, %v", v, err)
	}
	if _, err := m.sys.Call(ctx, ref, "untrusted"); !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("untrusted peer's call = %v", err)
	}
	// The refusing node says whom it refused, and why (once its side of
	// the handshake has ended, which may be after the peer's).
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "b to log the refused handshake", func() bool {
		return logs.FilterMessageSnippet("TLS handshake failed").Len() > 0
	})
	refM := spawn(t, m, echo{})
	if _, err := a.sys.Call(ctx, refM, "to untrusted"); !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("call to an untrusted peer = %v", err)
	}
	// The caller that refuses the peer's certificate says so too.
	if logsA.FilterMessageSnippet("TLS handshake with a peer failed").Len() == 0 {
		t.Fatal("a did not log the handshake it refused")
	}
	// A plain client is refused too.
	plain := startNode(t, b, Config{Node: "p"})
	if _, err := plain.sys.Call(ctx, ref, "plain"); !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("plain call to a TLS node = %v", err)
	}
}

func sliceBuf(b []byte) mem.Buffer { return mem.SliceBuffer(b) }

// pendingCalls counts the calls waiting for a reply from node.
func (t *Transport) pendingCalls(node string) int {
	t.mu.Lock()
	p := t.peers[node]
	t.mu.Unlock()
	if p == nil {
		return 0
	}
	s := p.cur.Load()
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// A node whose connection went down is dialled again as soon as gRPC has
// the connection back up: the session backoff, grown during the outage,
// does not add its rest to gRPC's own re-dial.
func TestRedialsAsSoonAsTheConnectionIsBack(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, Config{Node: "a"})
	b := startNode(t, bk, Config{Node: "b"})
	proxy := etcdtest.NewProxy(t, b.addr)
	bk.set("b", proxy.Addr())
	ref := spawn(t, b, echo{})
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := a.sys.Call(ctx, ref, "before"); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	// Calls during the outage fail fast with ErrNodeDown, and their failed
	// dials grow the session backoff to its maximum.
	p, err := a.tr.peer("b")
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := a.sys.Call(ctx, ref, "during")
		if !errors.Is(err, actor.ErrNodeDown) {
			t.Fatalf("call during the outage: %v, want ErrNodeDown", err)
		}
		p.mu.Lock()
		grown := p.backoff == maxBackoff
		p.mu.Unlock()
		if grown {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	proxy.Heal()
	// Once gRPC has the connection up and the peer has seen it, the next
	// call goes through, though the backoff alone would still refuse it.
	etcdtest.WaitFor(t, 10*time.Second, 2*time.Millisecond, "the connection to be ready", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cc != nil && p.cc.GetState() == connectivity.Ready && !p.awaiting
	})
	if _, err := a.sys.Call(ctx, ref, "after"); err != nil {
		t.Fatalf("first call once the connection is back: %v", err)
	}
}

// A draining node answers every call it read, refuses the rest, and tells
// the sender which is which: a call read before the drain gets its reply,
// one that arrives after fails with ErrNotDelivered, never a bare
// ErrNodeDown, and so does one on a stream opened after.
func TestDrainAnswersWhatItReadAndFailsTheRestAsNotDelivered(t *testing.T) {
	a, b, target, ctx := echoPair(t, Config{}, Config{})
	gate, handling := make(chan struct{}), make(chan struct{})
	slow := spawn(t, b, actor.Func(func(_ *actor.Context, msg any) (any, error) {
		close(handling)
		<-gate
		return msg, nil
	}))
	if _, err := a.sys.Call(ctx, target, "warm"); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		v, err := a.sys.Call(ctx, slow, "read")
		if err == nil && v != "read" {
			err = fmt.Errorf("reply %v", v)
		}
		read <- err
	}()
	<-handling
	drained := make(chan struct{})
	go func() {
		b.tr.Drain(ctx)
		close(drained)
	}()
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "b to drain", func() bool {
		b.tr.laneMu.Lock()
		defer b.tr.laneMu.Unlock()
		return b.tr.draining
	})
	late := make(chan error, 1)
	go func() { _, err := a.sys.Call(ctx, target, "late"); late <- err }()
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "the late call to be pending", func() bool { return a.tr.pendingCalls("b") == 2 })
	select {
	case err := <-late:
		t.Fatalf("call set aside by a draining node returned before the drain ended: %v", err)
	case <-drained:
		t.Fatal("drain ended with a call it read unanswered")
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-read; err != nil {
		t.Fatalf("call read before the drain = %v, want its reply", err)
	}
	if err := <-late; !errors.Is(err, actor.ErrNotDelivered) || !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("call that arrived during the drain = %v, want ErrNotDelivered and ErrNodeDown", err)
	}
	<-drained
	b.tr.laneMu.Lock()
	lanes := len(b.tr.lanes)
	b.tr.laneMu.Unlock()
	if lanes != 0 {
		t.Fatalf("drain returned with %d inbound streams still open", lanes)
	}
	for i := 0; i < 3; i++ {
		if _, err := a.sys.Call(ctx, target, "after"); !errors.Is(err, actor.ErrNotDelivered) || !errors.Is(err, actor.ErrNodeDown) ||
			!strings.Contains(err.Error(), "b is leaving (or has left) the cluster") {
			t.Fatalf("call %d after the drain = %v, want ErrNotDelivered and ErrNodeDown", i, err)
		}
	}
}

// A call that reaches a node whose actor system has stopped (the node is
// on its way out) fails with ErrNotDelivered: nothing there took it.
func TestCallToAStoppedSystemIsNotDelivered(t *testing.T) {
	a, b, target, ctx := echoPair(t, Config{}, Config{})
	if _, err := a.sys.Call(ctx, target, "warm"); err != nil {
		t.Fatal(err)
	}
	if err := b.sys.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.sys.Call(ctx, target, "late"); !errors.Is(err, actor.ErrNotDelivered) || !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("call to a stopped system = %v, want ErrNotDelivered and ErrNodeDown", err)
	}
	if _, err := a.tr.CallName(ctx, "b", "svc", "late"); !errors.Is(err, actor.ErrNotDelivered) {
		t.Fatalf("call by name to a stopped system = %v, want ErrNotDelivered", err)
	}
}

// gate tells entered of every call, and answers it only once open is
// closed.
type gate struct {
	entered, open chan struct{}
	release       func() // opens it
}

// newGate makes a gate that opens when the test ends, if not before.
func newGate(t *testing.T) gate {
	g := gate{entered: make(chan struct{}, 16), open: make(chan struct{})}
	var once sync.Once
	g.release = func() { once.Do(func() { close(g.open) }) }
	t.Cleanup(g.release)
	return g
}

func (g gate) HandleCall(_ *actor.Context, msg any) (any, error) {
	g.entered <- struct{}{}
	<-g.open
	return msg, nil
}

// A call whose handler blocks on the receiver runs on the goroutine that
// read it (the actor was idle); the reading must move on without it, so
// everything else the sender sends is still delivered.
func TestBlockedHandlerHoldsUpNothingElseOnItsStream(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	g := newGate(t)
	blocked, echoRef := spawn(t, n, g), spawn(t, n, echo{})
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := a.sys.Call(ctx, echoRef, "open the stream"); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := a.sys.Call(ctx, blocked, "held")
		held <- err
	}()
	<-g.entered
	for i := range 20 {
		if v, err := a.sys.Call(ctx, echoRef, i); err != nil || v != i {
			t.Fatalf("call %d behind a blocked handler: %v, %v", i, v, err)
		}
	}
	select {
	case err := <-held:
		t.Fatalf("the gated call returned before its gate opened: %v", err)
	default:
	}
	g.release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// relay answers a call by calling next with it, and answers with what
// next answered.
type relay struct{ next actor.Ref }

func (r relay) HandleCall(c *actor.Context, msg any) (any, error) {
	return c.System().Call(c.Context(), r.next, msg)
}

// A call from b's actor back to a, whose handler calls b again, travels
// over the stream that is running b's first handler: it completes, and
// does not wait for a deadline.
func TestCallsBackAndForthBetweenTwoNodes(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	last := spawn(t, n, echo{})
	mid := spawn(t, a, relay{next: last})
	first := spawn(t, n, relay{next: mid})
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 50 {
		if v, err := a.sys.Call(ctx, first, i); err != nil || v != i {
			t.Fatalf("round %d: %v, %v", i, v, err)
		}
	}
}

// A transport closes while one of its streams runs a handler that never
// returns.
func TestCloseIsNotHeldByABlockedHandler(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	g := newGate(t)
	blocked := spawn(t, n, g)
	ctx := ctxTimeout(t, 10*time.Second)
	held := make(chan error, 1)
	go func() {
		_, err := a.sys.Call(ctx, blocked, "held")
		held <- err
	}()
	<-g.entered
	closed := make(chan struct{})
	go func() {
		n.tr.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a handler that never returns")
	}
	if err := <-held; !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("the held call ended with %v, want ErrNodeDown", err)
	}
}

// A cast or send that waits to be taken crosses nodes like a call: it
// returns once the remote actor has taken it, and a receiver that cannot
// take it says why.
func TestTakenCastAcrossNodes(t *testing.T) {
	b := newBook()
	a := startNode(t, b, Config{Node: "a"})
	n := startNode(t, b, Config{Node: "b"})
	s := &sink{}
	sinkRef, echoRef := spawn(t, n, s), spawn(t, n, echo{})
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 10 {
		if err := a.sys.CastTaken(ctx, sinkRef, i); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := a.sys.Call(ctx, sinkRef, "count"); err != nil || v != 10 {
		t.Fatalf("the sink counted %v, %v; want 10", v, err)
	}
	if err := a.sys.CastTaken(ctx, echoRef, 1); !errors.Is(err, actor.ErrUnhandled) {
		t.Errorf("taken cast to an actor without HandleCast: %v", err)
	}
	if err := a.sys.SendTaken(ctx, sinkRef, 1); !errors.Is(err, actor.ErrUnhandled) {
		t.Errorf("taken send to an actor without HandleInfo: %v", err)
	}
	gone := actor.Ref{Node: "b", ID: 1 << 40, Incarnation: sinkRef.Incarnation}
	if err := a.sys.CastTaken(ctx, gone, 1); !errors.Is(err, actor.ErrNotFound) {
		t.Errorf("taken cast to no actor: %v", err)
	}
}

// A node Lookup does not know is looked for with Refresh by Call, Cast,
// CallName and Monitor, which may wait; never by Send, which does not.
func TestUnknownNodeIsRefreshedExceptBySend(t *testing.T) {
	hidden, seen := newBook(), newBook()
	b := startNode(t, hidden, Config{Node: "b"})
	var refreshes atomic.Int32
	a := startNode(t, seen, Config{Node: "a", Refresh: func(ctx context.Context, node string) {
		refreshes.Add(1)
		if addr, ok := hidden.lookup(node); ok && ctx.Err() == nil {
			seen.set(node, addr)
		}
	}})
	ref := spawn(t, b, echo{})
	ctx := ctxTimeout(t, 10*time.Second)
	if err := a.sys.Send(ref, "info"); !errors.Is(err, actor.ErrNodeDown) {
		t.Fatalf("send to a node Lookup does not know = %v, want ErrNodeDown", err)
	}
	if n := refreshes.Load(); n != 0 {
		t.Fatalf("send refreshed %d times; it must not wait", n)
	}
	if v, err := a.sys.Call(ctx, ref, "hi"); err != nil || v != "hi" {
		t.Fatalf("call after refresh = %v, %v", v, err)
	}
	if n := refreshes.Load(); n != 1 {
		t.Fatalf("refreshes = %d, want 1", n)
	}
	if _, err := a.sys.Call(ctx, ref, "again"); err != nil || refreshes.Load() != 1 {
		t.Fatalf("call on an open session = %v after %d refreshes; want no new refresh", err, refreshes.Load())
	}
	if _, err := a.sys.Call(ctx, actor.Ref{Node: "nobody", ID: 1, Incarnation: 1}, "x"); !errors.Is(err, actor.ErrNodeDown) || refreshes.Load() != 2 {
		t.Fatalf("call to a node no one knows = %v after %d refreshes; want ErrNodeDown after 2", err, refreshes.Load())
	}
}
