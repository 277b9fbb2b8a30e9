package registry

import (
	"errors"

	"github.com/cohort-go/cohort/actor"
)

// Sentinel errors of the registry package; test for them with errors.Is.
var (
	// ErrNotFound: no name is registered under the key. It is
	// actor.ErrNotFound, so resolvers and callers test for one error.
	ErrNotFound = actor.ErrNotFound
	// ErrAlreadyRegistered: the name is held. The error returned by
	// Register is an *actor.AlreadyRegisteredError carrying the owner.
	ErrAlreadyRegistered = actor.ErrAlreadyRegistered
	// ErrInvalidName: the name fails actor.ValidateName or holds a '/'.
	ErrInvalidName = actor.ErrInvalidName
	// ErrValueTooLarge: the metadata passed with a name is longer than
	// Config.MaxValueSize.
	ErrValueTooLarge = errors.New("registry: value too large")
	// ErrNotOwner: Unregister or Update found the name held under another
	// lease than this node's current one.
	ErrNotOwner = errors.New("registry: name held by another owner")
	// ErrNoSession: the registry was built without a lease session and is
	// read-only.
	ErrNoSession = errors.New("registry: no lease session; registry is read-only")
	// ErrClosed: the registry has been closed.
	ErrClosed = errors.New("registry: closed")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("registry: invalid config")
	// ErrCorruptEntry: a key under the names prefix does not hold a
	// registry record.
	ErrCorruptEntry = errors.New("registry: corrupt entry")
)
