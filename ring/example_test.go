package ring_test

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/internal/embedetcd"
	"github.com/cohort-go/cohort/ring"
)

func ExampleWatch() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ring-example")
	defer os.RemoveAll(dir)
	etcd, err := embedetcd.Start(ctx, embedetcd.Config{Dir: dir, UnsafeNoFsync: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer etcd.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()

	// A node publishes itself bound to its session lease.
	lease, _ := cli.Grant(ctx, 10)
	for _, id := range []string{"a", "b", "c"} {
		v, _ := ring.EncodeMember(ring.Member{ID: id, Addr: id + ":7000", StartedAt: time.Now(), Kinds: []string{"counter"}})
		_, _ = cli.Put(ctx, ring.MemberKey("/app", id), string(v), clientv3.WithLease(lease.ID))
	}

	r, err := ring.Watch(ctx, cli, "/app", ring.Options{LocalID: "a"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	owner, _ := r.NodeFor("user:42")
	counterOwner, _ := r.NodeForAmong("user:42", ring.OfferingKind("counter"))
	fmt.Println(len(r.Nodes()), "members; same owner among counter nodes:", owner == counterOwner)

	changes, cancel := r.Subscribe()
	defer cancel()
	<-changes // the current member set
	_, _ = cli.Delete(ctx, ring.MemberKey("/app", "b"))
	c := <-changes
	fmt.Println("left:", c.Left[0].ID, "members now:", len(c.Members))
	// Output:
	// 3 members; same owner among counter nodes: true
	// left: b members now: 2
}
