package cohort_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
)

// Every configuration Start refuses is reported as ErrInvalidConfig,
// whichever step finds it.
func TestBadConfigIsErrInvalidConfig(t *testing.T) {
	cases := map[string]cohort.Config{
		"slash in node id":         {NodeID: "a/b"},
		"control node id":          {NodeID: "a\x01"},
		"slash in cluster":         {Cluster: "x/y"},
		"relative prefix":          {Prefix: "cohort"},
		"negative dial timeout":    {DialTimeout: -time.Second},
		"negative ttl":             {LeaseTTL: -time.Second},
		"negative margin":          {LeaseMargin: -time.Second},
		"ttl below minimum":        {LeaseTTL: time.Second},
		"ttl just below minimum":   {LeaseTTL: 1999 * time.Millisecond},
		"margin as long as ttl":    {LeaseTTL: 2 * time.Second, LeaseMargin: 2 * time.Second},
		"empty endpoint":           {Endpoints: []string{""}},
		"cert without key":         {CertFile: "x.pem"},
		"missing tls files":        {CAFile: "/nonexistent/ca.pem"},
		"embedded url scheme":      {EmbeddedClientURL: "ftp://127.0.0.1:0"},
		"embedded url malformed":   {EmbeddedClientURL: "http://[::1"},
		"negative message size":    {Transport: cohort.TransportConfig{MaxMessageSize: -1}},
		"unparsable listen addr":   {Transport: cohort.TransportConfig{ListenAddr: "no-port"}},
		"transport tls half given": {Transport: cohort.TransportConfig{CAFile: "/nonexistent/ca.pem"}},
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
