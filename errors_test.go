package cohort_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
)

// Every configuration Start refuses is reported as ErrInvalidConfig,
// whichever step finds it.
func TestBadConfig(t *testing.T) {
	cases := map[string]cohort.Config{
		"slash in node id":             {NodeID: "a/b"},
		"control node id":              {NodeID: "a\x01"},
		"blank node id":                {NodeID: " "},
		"empty kind":                   {Kinds: []string{""}},
		"empty role":                   {Roles: []string{"web", ""}},
		"slash in cluster":             {Cluster: "x/y"},
		"relative prefix":              {Prefix: "cohort"},
		"negative dial timeout":        {DialTimeout: -time.Second},
		"negative ttl":                 {LeaseTTL: -time.Second},
		"negative margin":              {LeaseMargin: -time.Second},
		"ttl below minimum":            {LeaseTTL: time.Second},
		"ttl just below minimum":       {LeaseTTL: 1999 * time.Millisecond},
		"margin as long as ttl":        {LeaseTTL: 2 * time.Second, LeaseMargin: 2 * time.Second},
		"empty endpoint":               {Endpoints: []string{""}},
		"malformed endpoint":           {Endpoints: []string{"htp:/x y"}},
		"endpoint scheme":              {Endpoints: []string{"ftp://127.0.0.1:2379"}},
		"endpoint without port":        {Endpoints: []string{"http://127.0.0.1"}},
		"cert without key":             {CertFile: "x.pem"},
		"missing tls files":            {CAFile: "/nonexistent/ca.pem"},
		"embedded url scheme":          {EmbeddedClientURL: "ftp://127.0.0.1:0"},
		"embedded url malformed":       {EmbeddedClientURL: "http://[::1"},
		"negative message size":        {Transport: cohort.TransportConfig{MaxMessageSize: -1}},
		"unparsable listen addr":       {Transport: cohort.TransportConfig{ListenAddr: "no-port"}},
		"transport tls half given":     {Transport: cohort.TransportConfig{CAFile: "/nonexistent/ca.pem"}},
		"addr without port":            {Addr: "garbage"},
		"addr without host":            {Addr: ":9000"},
		"addr with bad port":           {Addr: "10.0.0.1:http"},
		"root prefix":                  {Prefix: "/"},
		"tls, embedded etcd":           {TLS: &tls.Config{}},
		"user, embedded etcd":          {Username: "u", Password: "p"},
		"embedded url https":           {EmbeddedClientURL: "https://127.0.0.1:0"},
		"server name without tls":      {Transport: cohort.TransportConfig{ServerName: "x"}},
		"cert without key (transport)": {Transport: cohort.TransportConfig{CertFile: "c.pem"}},
	}
	var never *cohort.Node // what a failed Start returns
	if err := never.Stop(context.Background()); err != nil {
		t.Fatalf("Stop on a nil node: %v", err)
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := cohort.Start(ctx, cfg)
			if err == nil {
				n.Stop(context.Background())
				t.Fatal("started")
			}
			if !errors.Is(err, cohort.ErrInvalidConfig) {
				t.Fatalf("errors.Is(%v, ErrInvalidConfig) is false", err)
			}
			t.Log(err)
		})
	}
}

// Every method of a stopped node that can fail says so with ErrStopped,
// not with the canceled context or closed session it ran into.
func TestStoppedNodeMethodsFailWithErrStopped(t *testing.T) {
	n := startNode(t, cohort.Config{NodeID: "stopped"})
	ctx := context.Background()
	if err := n.RegisterKind("before", func() actor.Actor { return echo{} }); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_, callErr := n.Call(ctx, actor.Name("x"), "hi")
	_, dsupErr := n.DistributedSupervisor(ctx, "d", supervisor.DistributedOptions{})
	_, supErr := n.Supervise(ctx)
	_, elErr := n.Election("e")
	_, campErr := n.Campaign(ctx, "e", "v")
	_, localNameErr := n.CallName(ctx, n.ID(), "x", "hi")
	_, remoteNameErr := n.CallName(ctx, "elsewhere", "x", "hi")
	for name, err := range map[string]error{
		"RegisterKind":          n.RegisterKind("after", func() actor.Actor { return echo{} }),
		"DistributedSupervisor": dsupErr,
		"Supervise":             supErr,
		"Election":              elErr,
		"Campaign":              campErr,
		"Call":                  callErr,
		"Cast":                  n.Cast(ctx, actor.Name("x"), "hi"),
		"Send":                  n.Send(actor.Name("x"), "hi"),
		"CallName here":         localNameErr,
		"CallName elsewhere":    remoteNameErr,
	} {
		if !errors.Is(err, cohort.ErrStopped) {
			t.Errorf("%s on a stopped node = %v, want ErrStopped", name, err)
		}
	}
	// Call, Cast and Send keep the actor system's own sentinel too.
	if !errors.Is(callErr, actor.ErrSystemStopped) {
		t.Errorf("Call on a stopped node = %v, want actor.ErrSystemStopped too", callErr)
	}
}

// A node whose etcd user may not use the node's prefix fails with
// ErrEtcdDenied, not as etcd unreachable.
func TestEtcdRefusingTheNodeIsDenied(t *testing.T) {
	cl := etcdtest.Start(t)
	cli := cl.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "nobody", "pw"); return err }, // no role
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// A wrong password: TestEtcdTLSAndAuth.
	for name, cfg := range map[string]cohort.Config{
		"no access to prefix": {Username: "nobody", Password: "pw"},
	} {
		cfg.Endpoints = cl.Endpoints()
		n, err := cohort.Start(ctx, cfg)
		if err == nil {
			n.Stop(ctx)
			t.Fatalf("%s: started", name)
		}
		if !errors.Is(err, cohort.ErrEtcdDenied) || errors.Is(err, cohort.ErrEtcdUnreachable) {
			t.Errorf("%s: %v, want ErrEtcdDenied", name, err)
		}
	}
}

// A node that publishes a transport address it cannot connect to itself
// says so in its log: other nodes would fail to reach it.
func TestUnreachableAddrIsWarned(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	n := startNode(t, cohort.Config{NodeID: "hidden", Addr: "127.0.0.1:1", Logger: zap.New(core)})
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "the warning about Config.Addr", func() bool {
		return logs.FilterMessageSnippet("Config.Addr").Len() > 0
	})
	n.Stop(context.Background())
	good, logs2 := observer.New(zap.WarnLevel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	m := startNode(t, cohort.Config{NodeID: "shown", Addr: addr, Transport: cohort.TransportConfig{ListenAddr: addr}, Logger: zap.New(good)})
	m.Stop(context.Background()) // waits for the check
	if l := logs2.FilterMessageSnippet("Config.Addr"); l.Len() > 0 {
		t.Fatalf("warned about a reachable address: %v", l.All())
	}
}
