package actor

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func tableProc(id uint64) *process { return &process{ref: Ref{Node: "t", ID: id, Incarnation: 1}} }

// TestProcTableMatchesMap drives the table through random inserts and
// removals, with IDs mostly in order as the system hands them out, and
// checks every lookup against a plain map, through growth, tombstones and
// shrinking.
func TestProcTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tab procTable
	model := map[uint64]*process{}
	next := uint64(1)
	check := func(step int) {
		for id := uint64(0); id < next+tableShards; id++ {
			if got, want := tab.load(id), model[id]; got != want {
				t.Fatalf("step %d: load(%d) = %v, want %v", step, id, got, want)
			}
		}
		all := tab.all()
		if len(all) != len(model) {
			t.Fatalf("step %d: all() has %d processes, want %d", step, len(all), len(model))
		}
		for _, p := range all {
			if model[p.ref.ID] != p {
				t.Fatalf("step %d: all() holds %v, not in the table", step, p.ref)
			}
		}
	}
	for step := range 20_000 {
		switch r := rng.IntN(10); {
		case r < 5 || len(model) == 0: // spawn, sometimes skipping reserved IDs
			id := next
			next += 1 + uint64(rng.IntN(2))
			p := tableProc(id)
			if !tab.insert(p) {
				t.Fatalf("step %d: insert(%d) refused", step, id)
			}
			model[id] = p
		case r < 6: // a second process under a live ID is refused
			for id := range model {
				if tab.insert(tableProc(id)) {
					t.Fatalf("step %d: insert of a duplicate ID %d accepted", step, id)
				}
				break
			}
		default: // exit; in bursts now and then, so the table shrinks
			n := 1
			if rng.IntN(50) == 0 {
				n = len(model) * 9 / 10
			}
			for id, p := range model {
				if n == 0 {
					break
				}
				n--
				if !tab.remove(p) {
					t.Fatalf("step %d: remove(%d) found nothing", step, id)
				}
				if tab.remove(p) {
					t.Fatalf("step %d: second remove(%d) found it again", step, id)
				}
				delete(model, id)
			}
		}
		if step%500 == 0 {
			check(step)
		}
	}
	check(-1)
}

// TestProcTableLookupsDuringChurn checks that a process stays visible to
// lock-free lookups while other processes come and go around it and the
// shard's array is rebuilt, grown and shrunk.
func TestProcTableLookupsDuringChurn(t *testing.T) {
	var tab procTable
	var stable []*process
	for id := uint64(1); id <= 4*tableShards; id += 3 {
		p := tableProc(id)
		tab.insert(p)
		stable = append(stable, p)
	}
	var stop atomic.Bool
	var misses atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for _, p := range stable {
					if tab.load(p.ref.ID) != p {
						misses.Add(1)
					}
				}
			}
		}()
	}
	next := uint64(10_000)
	for round := range 200 {
		var batch []*process
		for range 64 * (1 + round%8) {
			p := tableProc(next)
			next++
			tab.insert(p)
			batch = append(batch, p)
		}
		for _, p := range batch {
			tab.remove(p)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := misses.Load(); n > 0 {
		t.Fatalf("%d lookups missed a process that was in the table throughout", n)
	}
	got := tab.all()
	if len(got) != len(stable) {
		t.Fatalf("table holds %d processes after the churn, want %d", len(got), len(stable))
	}
	slices.SortFunc(got, func(a, b *process) int { return int(a.ref.ID) - int(b.ref.ID) })
	for i := range got {
		if got[i] != stable[i] {
			t.Fatalf("table holds %v, want %v", got[i].ref, stable[i].ref)
		}
	}
}
