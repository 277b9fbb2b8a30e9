package actor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Ref identifies one actor instance. Node names the system the actor runs
// on, ID is unique among the actors spawned by that system, and Incarnation
// is the system's boot identity, so a Ref kept across a restart of the node
// never reaches a different actor that happens to reuse the same ID. A
// restarted actor (for instance by a supervisor) is a new spawn and gets a
// new Ref; the zero Ref addresses nothing.
type Ref struct {
	Node        string `json:"node"`
	ID          uint64 `json:"id"`
	Incarnation uint64 `json:"inc"`
}

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r == Ref{} }

// String renders r as node/id.incarnation, for logs.
func (r Ref) String() string {
	if r.IsZero() {
		return "<nil ref>"
	}
	return r.Node + "/" + strconv.FormatUint(r.ID, 10) + "." + strconv.FormatUint(r.Incarnation, 36)
}

func (Ref) isTarget() {}

// Name addresses an actor by a registered name. It is resolved first in the
// system's local name table, then through each Resolver added with
// System.AddResolver (the global registry is one), in order.
type Name string

func (Name) isTarget() {}

// Target is what Call, Cast and Send address: a Ref or a Name.
type Target interface{ isTarget() }

// Resolver turns a name into the Ref of the actor registered under it. It is
// how a registry outside this package (such as the cluster-wide registry)
// plugs into name resolution. Resolve returns an error wrapping ErrNotFound
// when the name is not registered, and returns when ctx ends.
type Resolver interface {
	Resolve(ctx context.Context, name string) (Ref, error)
}

// ResolverFunc adapts a function to the Resolver interface.
type ResolverFunc func(ctx context.Context, name string) (Ref, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, name string) (Ref, error) { return f(ctx, name) }

// MaxNameLen is the longest name accepted, in bytes.
const MaxNameLen = 256

// ValidateName reports whether name may be registered: it must be non-empty,
// at most MaxNameLen bytes, valid UTF-8, free of control characters, and
// neither begin nor end with white space.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, limit is %d", ErrInvalidName, len(name), MaxNameLen)
	}
	if strings.TrimSpace(name) != name {
		return fmt.Errorf("%w: %q begins or ends with white space", ErrInvalidName, name)
	}
	for i, r := range name {
		if r == 0xFFFD {
			return fmt.Errorf("%w: invalid UTF-8 at byte %d of %q", ErrInvalidName, i, name)
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: control character %U at byte %d of %q", ErrInvalidName, r, i, name)
		}
	}
	return nil
}
