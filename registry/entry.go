package registry

import (
	"encoding/json"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
)

// Entry is one registered name as stored in etcd.
type Entry struct {
	// Name is the registered name.
	Name string
	// Ref is the actor registered under the name.
	Ref actor.Ref
	// Value is the metadata registered with the name; callers must not
	// modify it.
	Value []byte
	// Revision is the etcd revision of the entry's last change.
	Revision int64
	// CreateRevision is the etcd revision at which the name was taken; it
	// changes only when the name is released and taken again.
	CreateRevision int64
	// Lease is the lease the name is bound to; the name disappears with it.
	Lease clientv3.LeaseID
}

// record is the JSON value of a name's key.
type record struct {
	Ref   actor.Ref `json:"ref"`
	Value []byte    `json:"value,omitempty"`
}

func encode(ref actor.Ref, value []byte) (string, error) {
	b, err := json.Marshal(record{Ref: ref, Value: value})
	if err != nil {
		return "", fmt.Errorf("registry: encode: %w", err)
	}
	return string(b), nil
}

func decode(name string, kv *mvccpb.KeyValue) (Entry, error) {
	var rec record
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Entry{}, fmt.Errorf("%w: key %q: %w", ErrCorruptEntry, kv.Key, err)
	}
	return Entry{
		Name:           name,
		Ref:            rec.Ref,
		Value:          rec.Value,
		Revision:       kv.ModRevision,
		CreateRevision: kv.CreateRevision,
		Lease:          clientv3.LeaseID(kv.Lease),
	}, nil
}

// validateName accepts what actor.ValidateName accepts, minus '/': names
// are the last segment of their etcd key and prefix listing must match
// names only, so no escaping is needed and none is done.
func validateName(name string) error {
	if err := actor.ValidateName(name); err != nil {
		return err
	}
	if strings.IndexByte(name, '/') >= 0 {
		return fmt.Errorf("%w: %q holds '/'", ErrInvalidName, name)
	}
	return nil
}

// validatePrefix accepts the empty prefix and any prefix of a valid name.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validateName(prefix)
}
