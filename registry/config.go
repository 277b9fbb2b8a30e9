package registry

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/cohort-go/cohort/actor"
)

// DefaultMaxValueSize is the default bound on the metadata stored with a
// name.
const DefaultMaxValueSize = 64 << 10

// maxValueSizeLimit keeps a record well under etcd's default request size
// limit of 1.5 MiB.
const maxValueSizeLimit = 1 << 20

// Config configures a Registry. Its zero value is a working default.
type Config struct {
	// Prefix is the etcd key prefix of the cluster; names live under
	// Prefix + "/names/". Zero means "/cohort". A trailing '/' is
	// dropped.
	Prefix string

	// MaxValueSize bounds the metadata a name may carry, in bytes. Zero
	// means DefaultMaxValueSize (64 KiB); at most 1 MiB.
	MaxValueSize int

	// Logger receives watch and cache events. Nil means no logging.
	Logger *zap.Logger

	// Actors, if set, is the node's actor system. A name registered (or
	// updated) for one of its actors is then bound to that actor as well
	// as to the lease: it is released when the actor exits. Register
	// and Update refuse one of its actors that is not alive, and Register
	// takes over a name this node holds under its current epoch for one
	// of its actors that has exited: an actor restarted by its supervisor
	// that registers its name again in Init must not find it held by its
	// dead instance while that release is under way.
	Actors *actor.System
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "/cohort"
	}
	cfg.Prefix = strings.TrimRight(cfg.Prefix, "/")
	if cfg.MaxValueSize == 0 {
		cfg.MaxValueSize = DefaultMaxValueSize
	}
	if cfg.MaxValueSize < 0 || cfg.MaxValueSize > maxValueSizeLimit {
		return cfg, fmt.Errorf("%w: MaxValueSize %d outside (0, %d]", ErrInvalidConfig, cfg.MaxValueSize, maxValueSizeLimit)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg, nil
}
