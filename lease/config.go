package lease

import (
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"
)

// MinTTL is the shortest lease TTL accepted. etcd refuses to keep a lease
// for less than about one and a half election timeouts, which with its
// default timing rounds up to two seconds.
const MinTTL = 2 * time.Second

// Config configures a Session. Its zero value is a working default.
type Config struct {
	// TTL is the lease time-to-live asked of etcd. Zero means 5s. It is
	// rounded up to whole seconds (etcd's unit); a TTL below MinTTL is
	// rejected with ErrInvalidConfig. A longer TTL rides out longer
	// network trouble; a shorter one hands a dead node's work over sooner.
	TTL time.Duration

	// Margin is subtracted from the latest proven expiry to get the
	// alive-until instant at which an unrenewed epoch is declared lost.
	// Zero means max(TTL/5, 300ms).
	//
	// Why a margin at all: the alive-until instant is computed from the
	// send time of a keepalive, which is already earlier than the instant
	// etcd measures its own expiry from, so even a zero margin would fire
	// before etcd expires the lease. But firing the signal is not the end
	// of the matter: the holders of lease-bound work (singletons, named
	// children) must be told and must stop, which takes goroutine
	// scheduling, possibly a GC pause, and the time a child needs to stop.
	// Clocks may also run at slightly different rates. The margin is the
	// time budget for all of that; 300ms covers scheduling and GC on a
	// loaded machine, and TTL/5 scales the budget with the TTL a user
	// picked for a slower environment.
	Margin time.Duration

	// KeepAliveInterval is how often a keepalive is sent; it is also the
	// deadline of each keepalive request. Zero means TTL/3. Margin plus
	// KeepAliveInterval must be less than TTL, or an epoch could never be
	// renewed in time.
	KeepAliveInterval time.Duration

	// Logger receives lifecycle events (epoch started, epoch lost, rejoin
	// attempts). Nil means no logging.
	Logger *zap.Logger
}

// Validate reports, with an error wrapping ErrInvalidConfig, a field out
// of range, as Start would, without a client.
func (cfg Config) Validate() error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults returns cfg with every zero field replaced by its default,
// or an error wrapping ErrInvalidConfig.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.TTL < MinTTL {
		return cfg, fmt.Errorf("%w: TTL %v is below etcd's minimum lease TTL of %v", ErrInvalidConfig, cfg.TTL, MinTTL)
	}
	cfg.TTL = time.Duration(math.Ceil(cfg.TTL.Seconds())) * time.Second
	if cfg.Margin == 0 {
		cfg.Margin = max(cfg.TTL/5, 300*time.Millisecond)
	}
	if cfg.Margin < 0 {
		return cfg, fmt.Errorf("%w: negative Margin %v", ErrInvalidConfig, cfg.Margin)
	}
	if cfg.KeepAliveInterval == 0 {
		cfg.KeepAliveInterval = cfg.TTL / 3
	}
	if cfg.KeepAliveInterval < 0 {
		return cfg, fmt.Errorf("%w: negative KeepAliveInterval %v", ErrInvalidConfig, cfg.KeepAliveInterval)
	}
	if cfg.Margin+cfg.KeepAliveInterval >= cfg.TTL {
		return cfg, fmt.Errorf("%w: Margin %v plus KeepAliveInterval %v must be less than TTL %v",
			ErrInvalidConfig, cfg.Margin, cfg.KeepAliveInterval, cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg, nil
}
