package ring

import (
	"slices"
	"sync"

	"github.com/serialx/hashring"
)

// DefaultPoints is the number of points each member gets on the default
// hash ring (its hashring weight). With 512 points, ten members named
// "node-00".."node-09" and the keys "key-0".."key-99999", the busiest member
// holds 1.051 times the mean load, and an eleventh member takes 10.3% of the
// keys where 1/11 is 9.1% (TestBalanceAndJoin). A hundred-odd points leave
// max/mean above 1.15 on many member sets; a thousand gain little more,
// because then the sampling noise of the keys dominates.
const DefaultPoints = 512

// Locator picks the node that owns key among nodes, which are member IDs
// sorted in ascending order and never empty. It must return one of nodes,
// must depend on nothing but its arguments (so that every node computes the
// same answer), and must be safe for concurrent use.
type Locator func(key string, nodes []string) string

// Filter selects the members eligible for something, for example those that
// offer a kind. Key names the filter in the cache of sub-rings: filters with
// the same Key must select the same members.
type Filter struct {
	Key   string
	Match func(Member) bool
}

// OfferingKind selects the members whose Kinds include kind.
func OfferingKind(kind string) Filter {
	return Filter{Key: "kind\x00" + kind, Match: func(m Member) bool { return m.HasKind(kind) }}
}

// HavingRole selects the members whose Roles include role.
func HavingRole(role string) Filter {
	return Filter{Key: "role\x00" + role, Match: func(m Member) bool { return m.HasRole(role) }}
}

// view is an immutable member set with its ring. Views with the same members
// are shared by consecutive snapshots, so sub-rings are built once per
// member set.
type view struct {
	members []Member // sorted by ID
	ids     []string
	creates []int64 // create revision of each member's key
	byID    map[string]int
	lookup  func(key string) (string, bool)

	points  int
	locator Locator
	subs    sync.Map // Filter.Key → *view
}

func newView(members []Member, creates []int64, points int, locator Locator) *view {
	v := &view{
		members: members,
		creates: creates,
		ids:     make([]string, len(members)),
		byID:    make(map[string]int, len(members)),
		points:  points,
		locator: locator,
	}
	for i, m := range members {
		v.ids[i] = m.ID
		v.byID[m.ID] = i
	}
	v.lookup = buildLookup(v.ids, points, locator)
	return v
}

func buildLookup(ids []string, points int, locator Locator) func(string) (string, bool) {
	if len(ids) == 0 {
		return func(string) (string, bool) { return "", false }
	}
	if locator != nil {
		return func(key string) (string, bool) {
			n := locator(key, ids)
			return n, n != ""
		}
	}
	weights := make(map[string]int, len(ids))
	for _, id := range ids {
		weights[id] = points
	}
	// Points depend only on each member's ID and index, so the ring is the
	// same whatever order the map yields the members in.
	r := hashring.NewWithWeights(weights)
	return r.GetNode
}

func (v *view) among(f Filter) *view {
	if s, ok := v.subs.Load(f.Key); ok {
		return s.(*view)
	}
	var members []Member
	var creates []int64
	for i, m := range v.members {
		if f.Match(m) {
			members = append(members, m)
			creates = append(creates, v.creates[i])
		}
	}
	s, _ := v.subs.LoadOrStore(f.Key, newView(members, creates, v.points, v.locator))
	return s.(*view)
}

// Snapshot is the member set and ring as of one etcd revision. It never
// changes, so a caller that needs many lookups to agree with each other
// takes one Snapshot and uses it throughout. Every node that has seen the
// same revision holds an equal Snapshot and gets the same answers from it.
type Snapshot struct {
	rev     int64
	localID string
	v       *view
}

// Revision returns the etcd revision the snapshot reflects: every change to
// the member set up to and including it is in the snapshot.
func (s *Snapshot) Revision() int64 { return s.rev }

// NodeFor returns the ID of the member that owns key, or false when the
// snapshot has no members.
func (s *Snapshot) NodeFor(key string) (string, bool) { return s.v.lookup(key) }

// Mine reports whether the local node (Options.LocalID) owns key.
func (s *Snapshot) Mine(key string) bool {
	n, ok := s.v.lookup(key)
	return ok && s.localID != "" && n == s.localID
}

// Nodes returns the members sorted by ID. The slice is the caller's.
func (s *Snapshot) Nodes() []Member {
	out := make([]Member, len(s.v.members))
	for i, m := range s.v.members {
		out[i] = m.clone()
	}
	return out
}

// IDs returns the member IDs in ascending order. The slice is the caller's.
func (s *Snapshot) IDs() []string { return slices.Clone(s.v.ids) }

// Len returns the number of members.
func (s *Snapshot) Len() int { return len(s.v.members) }

// Member returns the member with the given ID, or false if there is none.
func (s *Snapshot) Member(id string) (Member, bool) {
	i, ok := s.v.byID[id]
	if !ok {
		return Member{}, false
	}
	return s.v.members[i].clone(), true
}

// Joined returns the etcd revision at which the member with the given ID
// created its member key: the start of its present incarnation (a node
// that restarts, or loses its lease and rejoins, creates it again).
func (s *Snapshot) Joined(id string) (int64, bool) {
	i, ok := s.v.byID[id]
	if !ok {
		return 0, false
	}
	return s.v.creates[i], true
}

// Among returns the snapshot restricted to the members f selects, with a
// ring built over them alone. Sub-rings are cached per f.Key and member
// set, so calling Among for every lookup costs a map read, not a rebuild.
func (s *Snapshot) Among(f Filter) *Snapshot {
	return &Snapshot{rev: s.rev, localID: s.localID, v: s.v.among(f)}
}

// NodeForAmong returns the owner of key among the members f selects, or
// false when f selects none.
func (s *Snapshot) NodeForAmong(key string, f Filter) (string, bool) {
	return s.v.among(f).lookup(key)
}
