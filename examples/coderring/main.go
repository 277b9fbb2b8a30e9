// Command coderring is the CoderRing seed in Go: a code generator per ring
// (invite codes, promo codes, ...), started on demand by a distributed
// supervisor with find-or-start and called by id from any node. Each
// generator hands out short codes from blocks it reserves in etcd with a
// compare-and-swap, so codes never repeat, also when a ring's generator
// moves to another node.
//
// It runs three nodes in this process on an embedded etcd, asks every node
// for codes from three rings, stops the node of one ring, and asks again.
//
//	go run ./examples/coderring
package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

// Next asks a ring's generator for its next code.
type Next struct{}

func init() { actor.MustRegisterType[Next]("coderring.Next") }

// blockSize is how many codes a generator reserves in etcd at a time.
const blockSize = 100

// alphabet leaves out look-alike characters (0/O, 1/I/L).
const alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// Generator hands out the codes of one ring. Its counter lives in etcd
// under /coderring/<ring>; it reserves blocks of blockSize numbers by
// compare-and-swap and encodes each number as a short code.
type Generator struct {
	cli       *clientv3.Client
	ring      string
	next, end int64
}

// Init takes the ring name from the child id ("ring:<name>").
func (g *Generator) Init(_ *actor.Context, args any) error {
	in, ok := args.(supervisor.InitArgs)
	if !ok {
		return fmt.Errorf("coderring: init args %T", args)
	}
	g.ring = strings.TrimPrefix(in.ID, "ring:")
	return nil
}

// HandleCall answers Next with a code never handed out before in the ring.
func (g *Generator) HandleCall(ctx *actor.Context, msg any) (any, error) {
	if _, ok := msg.(Next); !ok {
		return nil, actor.ErrUnhandled
	}
	if g.next == g.end {
		if err := g.reserve(ctx.Context()); err != nil {
			return nil, err
		}
	}
	n := g.next
	g.next++
	return g.ring + "-" + encode(n), nil
}

// reserve takes the next block of numbers: read the counter, then move it
// on only if nobody moved it meanwhile.
func (g *Generator) reserve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	key := "/coderring/" + g.ring
	for {
		resp, err := g.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("coderring: read %s: %w", key, err)
		}
		var start, rev int64
		if len(resp.Kvs) == 1 {
			if start, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64); err != nil {
				return fmt.Errorf("coderring: corrupt counter %s: %w", key, err)
			}
			rev = resp.Kvs[0].ModRevision
		}
		txn, err := g.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, strconv.FormatInt(start+blockSize, 10))).
			Commit()
		if err != nil {
			return fmt.Errorf("coderring: reserve in %s: %w", key, err)
		}
		if txn.Succeeded {
			g.next, g.end = start, start+blockSize
			return nil
		}
	}
}

func encode(n int64) string {
	b := []byte{}
	for {
		b = append(b, alphabet[n%int64(len(alphabet))])
		n /= int64(len(alphabet))
		if n == 0 {
			break
		}
	}
	for len(b) < 4 {
		b = append(b, alphabet[0])
	}
	slices.Reverse(b)
	return string(b)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "coderring:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fmt.Println("starting three nodes on an embedded etcd")
	var nodes []*cohort.Node
	defer func() {
		for _, n := range slices.Backward(nodes) {
			n.Stop(context.Background())
		}
	}()
	var rings []*supervisor.Distributed
	for i := range 3 {
		cfg := cohort.Config{NodeID: fmt.Sprintf("node-%d", i+1), LeaseTTL: 2 * time.Second}
		if i > 0 {
			cfg.Endpoints = nodes[0].Endpoints()
		}
		n, err := cohort.Start(ctx, cfg)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		cli := n.Client()
		if err := n.RegisterKind("coderring", func() actor.Actor { return &Generator{cli: cli} }); err != nil {
			return err
		}
		d, err := n.DistributedSupervisor(ctx, "rings", supervisor.DistributedOptions{})
		if err != nil {
			return err
		}
		rings = append(rings, d)
	}
	names := []string{"ring:invite", "ring:promo", "ring:referral"}
	seen := map[string]string{}
	ask := func(round string, ds []*supervisor.Distributed) error {
		fmt.Printf("\n== %s\n", round)
		for _, id := range names {
			for _, d := range ds {
				// Find-or-start from whichever node asks first.
				if _, err := d.FindOrStart(ctx, supervisor.ChildSpec{ID: id, Kind: "coderring"}); err != nil {
					return err
				}
			}
			var codes []string
			for _, d := range ds {
				reply, err := d.Call(ctx, id, Next{})
				if err != nil {
					return err
				}
				code, _ := reply.(string)
				if by, dup := seen[code]; dup {
					return fmt.Errorf("code %s handed out twice (first on %s)", code, by)
				}
				seen[code] = id
				codes = append(codes, code)
			}
			where, _ := ds[0].NodeFor(id)
			fmt.Printf("%-14s runs on %s; codes asked from each node: %s\n", id, where, strings.Join(codes, " "))
		}
		return nil
	}
	if err := ask("three rings, started on demand, called from every node", rings); err != nil {
		return err
	}

	host, _ := rings[0].NodeFor("ring:invite")
	fmt.Printf("\n== stopping %s, where ring:invite runs\n", host)
	var live []*supervisor.Distributed
	for i, n := range nodes {
		if n.ID() == host {
			start := time.Now()
			if err := n.Stop(ctx); err != nil {
				return err
			}
			nodes = slices.Delete(nodes, i, i+1)
			fmt.Printf("%s stopped in %v\n", host, time.Since(start).Round(time.Millisecond))
			continue
		}
		live = append(live, rings[i])
	}
	if err := ask("the same rings after the stop: no code repeats", live); err != nil {
		return err
	}
	fmt.Printf("\n%d codes handed out, all distinct\n", len(seen))
	return nil
}
