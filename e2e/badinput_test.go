//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/testcert"
	"github.com/cohort-go/cohort/ring"
	"github.com/cohort-go/cohort/supervisor"
)

// notRegistered is a message type no node registers with the codec.
type notRegistered struct{ N int }

// counter counts "incr" calls: the proof, after each bad input, that the
// node still serves and that no call was lost or handled twice.
type counter struct{ n int }

func (c *counter) HandleCall(_ *actor.Context, msg any) (any, error) {
	if msg == "incr" {
		c.n++
	}
	return c.n, nil
}

var echo = actor.Func(func(_ *actor.Context, msg any) (any, error) { return msg, nil })

// badFixture is a two-node cluster with state to keep: a global counter on
// a, an echo on each node, and ten distributed children.
type badFixture struct {
	t          *testing.T
	cl         *etcdtest.Cluster
	a, b       *cohort.Node
	supA, supB *supervisor.Distributed
	echoA      actor.Ref
	echoB      actor.Ref
	count      int
}

const (
	badCluster  = "bad"
	badSup      = "bad"
	badChildren = 10
	badMaxMsg   = 64 << 10
)

func (f *badFixture) config(id string) cohort.Config {
	return cohort.Config{NodeID: id, Cluster: badCluster, Endpoints: f.cl.Endpoints(), LeaseTTL: 2 * time.Second,
		DialTimeout: 5 * time.Second, Transport: cohort.TransportConfig{MaxMessageSize: badMaxMsg}}
}

func (f *badFixture) start(cfg cohort.Config) *cohort.Node {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cohort.Start(ctx, cfg)
	if err != nil {
		f.t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	f.t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		_ = n.Stop(sctx)
	})
	return n
}

func newBadFixture(t *testing.T) *badFixture {
	f := &badFixture{t: t, cl: etcdtest.Start(t)}
	f.a, f.b = f.start(f.config("a")), f.start(f.config("b"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range []*cohort.Node{f.a, f.b} {
		if err := n.RegisterKind("echo", func() actor.Actor { return echo }); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if f.supA, err = f.a.DistributedSupervisor(ctx, badSup, supervisor.DistributedOptions{}); err != nil {
		t.Fatal(err)
	}
	if f.supB, err = f.b.DistributedSupervisor(ctx, badSup, supervisor.DistributedOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "both nodes to offer the kind", func() bool {
		k := 0
		for _, m := range f.a.Ring().Nodes() {
			if m.HasKind("echo") && m.RunsSupervisor(badSup) {
				k++
			}
		}
		return k == 2
	})
	for i := range badChildren {
		if _, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: fmt.Sprintf("d%02d", i), Kind: "echo", Args: []byte("keep")}); err != nil {
			t.Fatal(err)
		}
	}
	cref, err := f.a.System().Spawn(ctx, &counter{}, actor.Options{})
	if err == nil {
		err = f.a.Registry().Register(ctx, "e2e.counter", cref, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if f.echoA, err = f.a.System().Spawn(ctx, echo, actor.Options{}); err != nil {
		t.Fatal(err)
	}
	if f.echoB, err = f.b.System().Spawn(ctx, echo, actor.Options{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// serving proves that both nodes still serve and nothing was lost: the
// counter counts every call exactly once, calls cross in both directions,
// and every distributed child keeps its spec and runs.
func (f *badFixture) serving(ctx context.Context) error {
	v, err := f.b.Call(ctx, actor.Name("e2e.counter"), "incr")
	if err != nil {
		return fmt.Errorf("b calls a's counter: %w", err)
	}
	f.count++
	if v != f.count {
		return fmt.Errorf("counter = %v, want %d", v, f.count)
	}
	if v, err := f.a.Call(ctx, f.echoB, "ping"); err != nil || v != "ping" {
		return fmt.Errorf("a calls b: %v, %v", v, err)
	}
	if v, err := f.b.Call(ctx, f.echoA, "ping"); err != nil || v != "ping" {
		return fmt.Errorf("b calls a: %v, %v", v, err)
	}
	for _, sup := range []*supervisor.Distributed{f.supA, f.supB} {
		if v, err := sup.Call(ctx, "d03", "child"); err != nil || v != "child" {
			return fmt.Errorf("call to a distributed child: %v, %v", v, err)
		}
	}
	cs, err := f.supA.WhichChildren(ctx)
	if err != nil {
		return err
	}
	if len(cs) != badChildren {
		return fmt.Errorf("%d children, want %d", len(cs), badChildren)
	}
	for _, c := range cs {
		if c.Status != supervisor.StatusRunning {
			return fmt.Errorf("child %s is %s", c.ID, c.Status)
		}
	}
	return nil
}

// startErr starts a node that should not start, and stops it if it does.
func startErr(cfg cohort.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := cohort.Start(ctx, cfg)
	if err == nil {
		_ = n.Stop(ctx)
		return errors.New("started")
	}
	return err
}

// Bad input through the public API and on the wire: each case gets a clear
// error (one that errors.Is a documented sentinel, or a closed connection
// for bytes that are not the protocol), and afterwards both nodes still
// serve and nothing is lost (see serving). Where a package test checks the
// same thing one level down, the case names it.
func TestBadInput(t *testing.T) {
	f := newBadFixture(t)
	good, other := testcert.NewCA(t, "cluster"), testcert.NewCA(t, "intruder")
	cases := []struct {
		name    string
		covered string // the lower-level test of the same check
		run     func(ctx context.Context) error
		want    error // nil: the case checks the outcome itself and returns nil
		text    string
	}{
		{name: "node id with a slash", covered: "cohort.TestBadConfig",
			run:  func(context.Context) error { c := f.config("x/y"); return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "x/y"},
		{name: "node id with a control character", covered: "cohort.TestBadConfig",
			run:  func(context.Context) error { return startErr(f.config("x\x01")) },
			want: cohort.ErrInvalidConfig, text: "NodeID"},
		{name: "node id longer than a name may be",
			run:  func(context.Context) error { return startErr(f.config(strings.Repeat("n", actor.MaxNameLen+1))) },
			want: cohort.ErrInvalidConfig, text: "NodeID"},
		{name: "empty node id gets a generated unique one",
			run: func(ctx context.Context) error {
				n := f.start(f.config(""))
				defer n.Stop(ctx)
				if n.ID() == "" || n.ID() == "a" || n.ID() == "b" || strings.Contains(n.ID(), "/") {
					return fmt.Errorf("generated id %q", n.ID())
				}
				return nil
			}},
		{name: "cluster name with a slash", covered: "cohort.TestBadConfig",
			run:  func(context.Context) error { c := f.config("x"); c.Cluster = "a/b"; return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "Cluster"},
		{name: "relative key prefix", covered: "cohort.TestBadConfig",
			run:  func(context.Context) error { c := f.config("x"); c.Prefix = "cohort/x"; return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "Prefix"},
		{name: "negative lease TTL", covered: "cohort.TestBadConfig",
			run:  func(context.Context) error { c := f.config("x"); c.LeaseTTL = -time.Second; return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "LeaseTTL"},
		{name: "lease TTL below etcd's minimum", covered: "cohort.TestBadConfig",
			run:  func(context.Context) error { c := f.config("x"); c.LeaseTTL = time.Second; return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "TTL"},
		{name: "negative dial timeout",
			run:  func(context.Context) error { c := f.config("x"); c.DialTimeout = -1; return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "DialTimeout"},
		{name: "empty etcd endpoint", covered: "cohort.TestBadConfig",
			run: func(context.Context) error {
				c := f.config("x")
				c.Endpoints = append(c.Endpoints, "")
				return startErr(c)
			},
			want: cohort.ErrInvalidConfig, text: "endpoint"},
		{name: "unreachable etcd fails within the dial timeout", covered: "cohort.TestUnreachableEtcdFailsClearly",
			run: func(context.Context) error {
				c := f.config("x")
				c.Endpoints, c.DialTimeout = []string{unusedAddr(t)}, 500*time.Millisecond
				began := time.Now()
				err := startErr(c)
				if took := time.Since(began); took > 10*time.Second {
					return fmt.Errorf("took %v to fail: %w", took, err)
				}
				return err
			},
			want: cohort.ErrEtcdUnreachable, text: "unreachable"},
		{name: "duplicate node id", covered: "cohort.TestDuplicateNodeIDFails",
			run:  func(context.Context) error { return startErr(f.config("a")) },
			want: cohort.ErrDuplicateNode, text: `"a"`},
		{name: "etcd CA file that does not exist",
			run:  func(context.Context) error { c := f.config("x"); c.CAFile = "/nonexistent/ca.pem"; return startErr(c) },
			want: cohort.ErrInvalidConfig, text: "TLS"},
		{name: "transport CA without a certificate", covered: "cohort.TestRemoteMutualTLS",
			run: func(context.Context) error {
				c := f.config("x")
				c.Transport.CA = good.Pool
				return startErr(c)
			},
			want: cohort.ErrInvalidConfig},
		{name: "node of another cluster prefix cannot reach this cluster's actors", covered: "transport.TestStreamFromAnotherClusterIsRefused",
			run: func(ctx context.Context) error {
				c := f.config("x")
				c.Cluster = "elsewhere"
				x := f.start(c)
				defer x.Stop(ctx)
				for _, m := range f.a.Ring().Nodes() {
					if m.ID == "x" {
						return errors.New("a node of another cluster joined this ring")
					}
				}
				_, err := x.Call(ctx, f.echoA, "hello")
				return err
			},
			want: cohort.ErrNodeDown, text: "not a member"},
		{name: "TLS peer with an untrusted certificate", covered: "transport.TestMutualTLSRefusesUntrustedPeer, cohort.TestRemoteMutualTLS",
			run: func(ctx context.Context) error {
				tlsCfg := func(ca *testcert.CA, id string) cohort.Config {
					c := f.config(id)
					c.Cluster = "tls"
					crt := ca.Issue(t, id)
					c.Transport.CA, c.Transport.Certificate = good.Pool, &crt
					return c
				}
				t1, t2, in := f.start(tlsCfg(good, "t1")), f.start(tlsCfg(good, "t2")), f.start(tlsCfg(other, "intruder"))
				defer in.Stop(ctx)
				defer t2.Stop(ctx)
				defer t1.Stop(ctx)
				ref, err := t1.System().Spawn(ctx, &counter{}, actor.Options{})
				if err != nil {
					return err
				}
				waitFor(t, 10*time.Second, "the intruder to see t1", func() bool { return len(in.Ring().Nodes()) == 3 })
				_, err = in.Call(ctx, ref, "incr")
				if v, err2 := t2.Call(ctx, ref, "get"); err2 != nil || v != 0 {
					return fmt.Errorf("trusted call after the intruder: %v, %v (the intruder's call must not count)", v, err2)
				}
				return err
			},
			want: cohort.ErrNodeDown},
		{name: "garbage bytes on the transport port", covered: "transport.TestGarbageOnThePortDoesNotHurtTheNode",
			run: func(ctx context.Context) error {
				var addr string
				for _, m := range f.b.Ring().Nodes() {
					if m.ID == "a" {
						addr = m.Addr
					}
				}
				junk := make([]byte, 32<<10)
				_, _ = rand.Read(junk)
				for i, prefix := range []string{"", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET / HTTP/1.1\r\n\r\n"} {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						return err
					}
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					_, _ = c.Write(append([]byte(prefix), junk[:1+i*10000]...))
					// The node closes the connection: a read ends.
					_, _ = c.Read(make([]byte, 1<<16))
					_ = c.Close()
				}
				return nil
			}},
		{name: "register a kind without a name",
			run:  func(context.Context) error { return f.a.RegisterKind("", func() actor.Actor { return echo }) },
			want: cohort.ErrInvalidConfig, text: "kind"},
		{name: "register a kind with a nil factory",
			run:  func(context.Context) error { return f.a.RegisterKind("nil", nil) },
			want: cohort.ErrInvalidConfig, text: "factory"},
		{name: "distributed supervisor name with a slash",
			run: func(ctx context.Context) error {
				_, err := f.a.DistributedSupervisor(ctx, "a/b", supervisor.DistributedOptions{})
				return err
			},
			want: supervisor.ErrInvalidSpec, text: "'/'"},
		{name: "child of an unknown kind",
			run: func(ctx context.Context) error {
				_, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: "u1", Kind: "nosuchkind"})
				return err
			},
			want: supervisor.ErrUnknownKind, text: "nosuchkind"},
		{name: "child id with a slash",
			run: func(ctx context.Context) error {
				_, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: "x/y", Kind: "echo"})
				return err
			},
			want: supervisor.ErrInvalidSpec, text: "x/y"},
		{name: "child id with a control character",
			run: func(ctx context.Context) error {
				_, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: "x\x00", Kind: "echo"})
				return err
			},
			want: supervisor.ErrInvalidSpec},
		{name: "child without a kind",
			run: func(ctx context.Context) error {
				_, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: "nokind"})
				return err
			},
			want: supervisor.ErrInvalidSpec, text: "no kind"},
		{name: "child with a negative shutdown",
			run: func(ctx context.Context) error {
				_, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: "neg", Kind: "echo", Shutdown: -5 * time.Second})
				return err
			},
			want: supervisor.ErrInvalidSpec, text: "shutdown"},
		{name: "child with an unknown restart type",
			run: func(ctx context.Context) error {
				_, _, err := f.supA.StartChild(ctx, supervisor.ChildSpec{ID: "rt", Kind: "echo", Restart: 9})
				return err
			},
			want: supervisor.ErrInvalidSpec, text: "restart"},
		{name: "child id that exists keeps the first spec",
			run: func(ctx context.Context) error {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, _, err := f.supB.StartChild(sctx, supervisor.ChildSpec{ID: "d01", Kind: "echo", Args: []byte("overwrite")})
				if sctx.Err() != nil {
					return fmt.Errorf("StartChild of an existing id returned only when its context ended: %w", err)
				}
				resp, gerr := f.a.Client().Get(ctx, f.a.Prefix()+"/sup/"+badSup+"/specs/d01")
				if gerr != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"a2VlcA=="`) {
					return fmt.Errorf("spec of d01 after a second start: %v %v", resp, gerr)
				}
				return err
			},
			want: supervisor.ErrAlreadyStarted, text: "d01"},
		{name: "FindOrStart without an id",
			run: func(ctx context.Context) error {
				_, err := f.supA.FindOrStart(ctx, supervisor.ChildSpec{Kind: "echo"})
				return err
			},
			want: supervisor.ErrInvalidSpec, text: "id"},
		{name: "call to a child that does not exist",
			run:  func(ctx context.Context) error { _, err := f.supB.Call(ctx, "nosuchchild", "x"); return err },
			want: supervisor.ErrChildNotFound, text: "nosuchchild"},
		{name: "message of an unregistered type", covered: "cohort.TestRemoteErrorsAndBadInput",
			run:  func(ctx context.Context) error { _, err := f.a.Call(ctx, f.echoB, notRegistered{N: 1}); return err },
			want: actor.ErrUnregisteredType, text: "RegisterType"},
		{name: "oversized message", covered: "cohort.TestRemoteErrorsAndBadInput, transport.TestMessageTooLargeFailsAtSender",
			run: func(ctx context.Context) error {
				_, err := f.a.Call(ctx, f.echoB, strings.Repeat("x", badMaxMsg+1))
				return err
			},
			want: cohort.ErrMessageTooLarge},
		{name: "oversized reply",
			run: func(ctx context.Context) error {
				big, err := f.b.System().Spawn(ctx, actor.Func(func(*actor.Context, any) (any, error) {
					return strings.Repeat("y", badMaxMsg+1), nil
				}), actor.Options{})
				if err != nil {
					return err
				}
				_, err = f.a.Call(ctx, big, "give me a lot")
				return err
			},
			want: cohort.ErrMessageTooLarge},
		{name: "ref of a node that is not a member", covered: "cohort.TestRemoteErrorsAndBadInput",
			run: func(ctx context.Context) error {
				_, err := f.a.Call(ctx, actor.Ref{Node: "ghost", ID: 1, Incarnation: 1}, "x")
				return err
			},
			want: cohort.ErrNodeDown, text: "not a member"},
		{name: "zero ref",
			run:  func(ctx context.Context) error { _, err := f.a.Call(ctx, actor.Ref{}, "x"); return err },
			want: actor.ErrInvalidRef},
		{name: "unknown global name",
			run:  func(ctx context.Context) error { _, err := f.b.Call(ctx, actor.Name("e2e.nobody"), "x"); return err },
			want: actor.ErrNotFound},
		{name: "malformed global name",
			run:  func(ctx context.Context) error { return f.a.Registry().Register(ctx, "bad\x00name", f.echoA, nil) },
			want: actor.ErrInvalidName},
		{name: "global name already taken",
			run:  func(ctx context.Context) error { return f.b.Registry().Register(ctx, "e2e.counter", f.echoB, nil) },
			want: actor.ErrAlreadyRegistered},
		{name: "global name for an actor that has stopped", covered: "registry.TestNameOfALocalActorGoesWithIt",
			run: func(ctx context.Context) error {
				ref, err := f.a.System().Spawn(ctx, echo, actor.Options{})
				if err == nil {
					err = f.a.System().Stop(ctx, ref, nil)
				}
				if err != nil {
					return err
				}
				return f.a.Registry().Register(ctx, "e2e.dead", ref, nil)
			},
			want: actor.ErrNotFound, text: "not alive"},
		{name: "message type JSON cannot carry", covered: "actor.TestRegisterTypeRefusesWhatJSONCannotCarry",
			run: func(context.Context) error {
				type hidden struct{ secret string }
				return actor.RegisterType[hidden]("e2e.hidden")
			},
			want: actor.ErrInvalidOption, text: "no exported field"},
		{name: "spawn of a nil behaviour",
			run:  func(ctx context.Context) error { _, err := f.a.System().Spawn(ctx, nil, actor.Options{}); return err },
			want: actor.ErrNilActor},
		{name: "singleton id with a slash", covered: "cohort.TestNodeSuperviseBadInput",
			run: func(ctx context.Context) error {
				_, err := f.a.Supervise(ctx, f.a.Singleton(supervisor.Spawn("s/1", func() actor.Actor { return echo }, actor.Options{})))
				return err
			},
			want: supervisor.ErrInvalidSpec},
		{name: "the same singleton twice on one node", covered: "supervisor.TestSingletonBadInput",
			run: func(ctx context.Context) error {
				s := func() supervisor.Child {
					return f.a.Singleton(supervisor.Spawn("twice", func() actor.Actor { return echo }, actor.Options{}))
				}
				sup, err := f.a.Supervise(ctx, s())
				if err != nil {
					return err
				}
				defer sup.Stop(ctx)
				_, err = f.a.Supervise(ctx, s())
				return err
			},
			want: supervisor.ErrSingletonRunning},
		{name: "call whose deadline already passed",
			run: func(ctx context.Context) error {
				dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
				defer cancel()
				_, err := f.a.Call(dctx, f.echoB, "late")
				return err
			},
			want: context.DeadlineExceeded},
		{name: "calls to and on a stopped node", covered: "cohort.TestRemoteCallFailsAtOnceWhenNodeStops",
			run: func(ctx context.Context) error {
				c := f.start(f.config("c"))
				waitFor(t, 10*time.Second, "a to see c", func() bool {
					return slices.ContainsFunc(f.a.Ring().Nodes(), func(m ring.Member) bool { return m.ID == "c" })
				})
				ref, err := c.System().Spawn(ctx, echo, actor.Options{})
				if err != nil {
					return err
				}
				if v, err := f.a.Call(ctx, ref, "hi"); err != nil || v != "hi" {
					return fmt.Errorf("call to c before it stops: %v, %v", v, err)
				}
				if err := c.Stop(ctx); err != nil {
					return err
				}
				if _, err := c.Call(ctx, f.echoA, "from the dead"); err == nil {
					return errors.New("a stopped node made a call")
				}
				if _, err := c.Supervise(ctx); !errors.Is(err, cohort.ErrStopped) {
					return fmt.Errorf("Supervise on a stopped node = %v", err)
				}
				if _, err := c.DistributedSupervisor(ctx, "late", supervisor.DistributedOptions{}); !errors.Is(err, cohort.ErrStopped) {
					return fmt.Errorf("DistributedSupervisor on a stopped node = %v", err)
				}
				began := time.Now()
				_, err = f.a.Call(ctx, ref, "anyone?")
				if took := time.Since(began); took > 2*time.Second {
					return fmt.Errorf("call to the stopped node took %v: %w", took, err)
				}
				return err
			},
			want: cohort.ErrNodeDown},
	}
	if len(cases) < 20 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := c.run(ctx)
			switch {
			case c.want == nil && err != nil:
				t.Errorf("got %v", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Errorf("got %v, want an error that is %v", err, c.want)
			case c.want != nil && !strings.Contains(err.Error(), c.text):
				t.Errorf("error %q does not say %q", err, c.text)
			}
			if err != nil {
				t.Logf("error: %v", err)
			}
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			if err := f.serving(sctx); err != nil {
				t.Fatalf("after %s: %v", c.name, err)
			}
		})
	}
}

// unusedAddr returns a loopback address nothing listens on.
func unusedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// waitFor waits until cond holds, polling it every 20ms, and fails t if it
// does not within limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	etcdtest.WaitFor(t, limit, 20*time.Millisecond, what, cond)
}
