package ring

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Member is what a node publishes about itself under MemberKey, bound to
// its session lease so that it disappears when the node does.
type Member struct {
	// ID names the node; it is unique in the cluster and has no '/'.
	ID string `json:"id"`
	// Addr is the node's transport address.
	Addr string `json:"addr"`
	// StartedAt is when the node started.
	StartedAt time.Time `json:"startedAt"`
	// Version is the node's software version.
	Version string `json:"version,omitempty"`
	// Kinds lists the child kinds the node can run, sorted.
	Kinds []string `json:"kinds,omitempty"`
	// Roles lists the node's role labels, sorted.
	Roles []string `json:"roles,omitempty"`
	// Supervisors lists the distributed supervisors running on the node,
	// sorted: a supervisor places children only on the nodes that run it.
	Supervisors []string `json:"sups,omitempty"`
	// TLS says whether the node's transport uses mutual TLS: two nodes
	// that differ cannot exchange messages.
	TLS bool `json:"tls,omitempty"`
}

// HasKind reports whether m offers kind.
func (m Member) HasKind(kind string) bool { return slices.Contains(m.Kinds, kind) }

// HasRole reports whether m carries role.
func (m Member) HasRole(role string) bool { return slices.Contains(m.Roles, role) }

// RunsSupervisor reports whether m runs the distributed supervisor name.
func (m Member) RunsSupervisor(name string) bool { return slices.Contains(m.Supervisors, name) }

func (m Member) clone() Member {
	m.Kinds = slices.Clone(m.Kinds)
	m.Roles = slices.Clone(m.Roles)
	m.Supervisors = slices.Clone(m.Supervisors)
	return m
}

func (m Member) equal(o Member) bool {
	return m.ID == o.ID && m.Addr == o.Addr && m.StartedAt.Equal(o.StartedAt) &&
		m.Version == o.Version && slices.Equal(m.Kinds, o.Kinds) && slices.Equal(m.Roles, o.Roles) &&
		slices.Equal(m.Supervisors, o.Supervisors)
}

// MembersPrefix returns the etcd key prefix under which the members of the
// cluster rooted at prefix live: "<prefix>/members/".
func MembersPrefix(prefix string) string {
	return strings.TrimRight(prefix, "/") + "/members/"
}

// MemberKey returns the etcd key of member id in the cluster rooted at
// prefix: "<prefix>/members/<id>".
func MemberKey(prefix, id string) string {
	return MembersPrefix(prefix) + id
}

func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrInvalidMember)
	}
	if strings.Contains(id, "/") {
		return fmt.Errorf("%w: id %q contains '/'", ErrInvalidMember, id)
	}
	return nil
}

// normalize sorts and deduplicates the label lists so that equal members
// encode to equal bytes.
func normalize(m Member) Member {
	m = m.clone()
	for _, l := range []*[]string{&m.Kinds, &m.Roles, &m.Supervisors} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
		if len(*l) == 0 {
			*l = nil
		}
	}
	return m
}

// EncodeMember returns the value to store under MemberKey for m: JSON with
// Kinds, Roles and Supervisors sorted and deduplicated. It fails with ErrInvalidMember
// when m has no usable ID.
func EncodeMember(m Member) ([]byte, error) {
	if err := checkID(m.ID); err != nil {
		return nil, err
	}
	b, err := json.Marshal(normalize(m))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMember, err)
	}
	return b, nil
}

// DecodeMember parses a value written by EncodeMember. It fails with
// ErrInvalidMember when b is not a member record or names no usable ID.
func DecodeMember(b []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(b, &m); err != nil {
		return Member{}, fmt.Errorf("%w: %w", ErrInvalidMember, err)
	}
	if err := checkID(m.ID); err != nil {
		return Member{}, err
	}
	return normalize(m), nil
}
