package mirror

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/internal/etcdtest"
)

// A watch that resumes from an old revision is "unsynced" on the server:
// etcd sends the backlog in batches of up to 1000 revisions, and each
// batch's header carries the store's current revision, not the revision of
// its last event. If the watch breaks between two batches, the mirror must
// resume after the last event it applied, or the rest of the backlog is
// lost for good.
func TestBreakWhileCatchingUpLosesNothing(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoint(0))
	viaProxy := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 2500
	var mu sync.Mutex
	armed, cut := false, false
	m, err := Start(ctx, viaProxy, "/m/", nil, func(u Update) {
		mu.Lock()
		defer mu.Unlock()
		if armed && !cut && len(u.Keys) > 0 && len(u.Keys) < n {
			// The first batch of the backlog is applied: break the
			// watch before the next one arrives.
			cut = true
			proxy.Cut()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	proxy.Cut()
	for i := range n {
		if _, err := direct.Put(ctx, fmt.Sprintf("/m/k%05d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	armed = true
	mu.Unlock()
	proxy.Heal()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		c := cut
		mu.Unlock()
		if c || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	proxy.Heal()
	last, err := direct.Put(ctx, "/m/last", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitRevision(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for i := range n {
		if _, ok := m.Get(fmt.Sprintf("/m/k%05d", i)); !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("the mirror lacks %d of %d keys after the watch broke while catching up", missing, n)
	}
}

// A mirror's revision means that every change up to it is applied: while
// it catches up a backlog, WaitRevision must not return for a revision
// whose change is still to come.
func TestWaitRevisionMeansApplied(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoint(0))
	viaProxy := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := Start(ctx, viaProxy, "/w/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	proxy.Cut()
	var resp *clientv3.PutResponse
	for i := range 2500 {
		if resp, err = direct.Put(ctx, fmt.Sprintf("/w/k%05d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	proxy.Heal()
	if err := m.WaitRevision(ctx, resp.Header.Revision-1); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get("/w/k02498"); !ok {
		t.Fatalf("WaitRevision(%d) returned before the put at that revision was applied (mirror at %d)",
			resp.Header.Revision-1, m.Revision())
	}
}
