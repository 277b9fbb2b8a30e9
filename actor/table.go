package actor

import (
	"sync"
	"sync/atomic"
)

// procTable maps actor IDs to the processes of one system. Every message
// sent by Ref looks its target up here, so a lookup takes no lock and does
// not hash through an interface: the table is split into shards by the low
// bits of the ID, and each shard is an open-addressing array of process
// pointers, read with atomic loads and written under the shard's mutex.
// IDs come from a counter, so consecutive IDs fill consecutive slots.
type procTable struct {
	shards [tableShards]tableShard
}

const (
	tableShards = 64 // a power of two
	shardBits   = 6  // log2(tableShards)
	minSlots    = 8  // a power of two
)

type tableShard struct {
	mu    sync.Mutex
	slots atomic.Pointer[slotArray]
	live  int // processes in the array; guarded by mu
	used  int // processes and tombstones; guarded by mu
	_     [32]byte
}

// slotArray is one generation of a shard's array. A rebuild publishes a
// new array and never writes the old one again, so a reader holding the
// old one sees the table as it was at some moment during its lookup.
type slotArray struct {
	s []atomic.Pointer[process]
}

// tombstone marks a slot whose process was removed while a probe sequence
// may still pass through it.
var tombstone = new(process)

func (t *procTable) shard(id uint64) *tableShard { return &t.shards[id&(tableShards-1)] }

// load returns the process with the given ID, or nil.
func (t *procTable) load(id uint64) *process {
	a := t.shard(id).slots.Load()
	if a == nil {
		return nil
	}
	mask := uint64(len(a.s) - 1)
	for i := (id >> shardBits) & mask; ; i = (i + 1) & mask {
		p := a.s[i].Load()
		if p == nil {
			return nil
		}
		if p.ref.ID == id && p != tombstone {
			return p
		}
	}
}

// insert adds p; it reports false, adding nothing, if a process with p's ID
// is in the table.
func (t *procTable) insert(p *process) bool {
	id := p.ref.ID
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.slots.Load()
	if a == nil || (sh.used+1)*4 > len(a.s)*3 {
		a = sh.rebuild(sh.live + 1)
	}
	mask := uint64(len(a.s) - 1)
	free := -1
	i := (id >> shardBits) & mask
	for ; ; i = (i + 1) & mask {
		q := a.s[i].Load()
		if q == nil {
			break
		}
		if q == tombstone {
			if free < 0 {
				free = int(i)
			}
		} else if q.ref.ID == id {
			return false
		}
	}
	if free >= 0 {
		i = uint64(free)
	} else {
		sh.used++
	}
	a.s[i].Store(p)
	sh.live++
	return true
}

// remove takes p out of the table; it reports whether p was in it.
func (t *procTable) remove(p *process) bool {
	id := p.ref.ID
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.slots.Load()
	if a == nil {
		return false
	}
	mask := uint64(len(a.s) - 1)
	i := (id >> shardBits) & mask
	for ; ; i = (i + 1) & mask {
		q := a.s[i].Load()
		if q == nil {
			return false
		}
		if q == p {
			break
		}
	}
	sh.live--
	if sh.live*8 < len(a.s) && len(a.s) > minSlots {
		// Mostly empty: shrink, which also drops the tombstones.
		a.s[i].Store(tombstone)
		sh.rebuild(sh.live)
		return true
	}
	if a.s[(i+1)&mask].Load() != nil {
		a.s[i].Store(tombstone)
		return true
	}
	// No probe sequence continues past an empty successor, so this slot and
	// the tombstones right before it can be emptied.
	for {
		a.s[i].Store(nil)
		sh.used--
		i = (i - 1) & mask
		if a.s[i].Load() != tombstone {
			return true
		}
	}
}

// rebuild publishes a new array sized for n processes holding the live
// ones; the caller holds sh.mu.
func (sh *tableShard) rebuild(n int) *slotArray {
	size := minSlots
	for size < 2*n {
		size *= 2
	}
	a := &slotArray{s: make([]atomic.Pointer[process], size)}
	mask := uint64(size - 1)
	if old := sh.slots.Load(); old != nil {
		for j := range old.s {
			p := old.s[j].Load()
			if p == nil || p == tombstone {
				continue
			}
			i := (p.ref.ID >> shardBits) & mask
			for a.s[i].Load() != nil {
				i = (i + 1) & mask
			}
			a.s[i].Store(p)
		}
	}
	sh.used = sh.live
	sh.slots.Store(a)
	return a
}

// all returns the processes in the table.
func (t *procTable) all() []*process {
	var out []*process
	for k := range t.shards {
		sh := &t.shards[k]
		sh.mu.Lock()
		if a := sh.slots.Load(); a != nil {
			for j := range a.s {
				if p := a.s[j].Load(); p != nil && p != tombstone {
					out = append(out, p)
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}
