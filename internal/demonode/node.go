// Package demonode is the node process behind the cluster demo
// (examples/cluster) and the distributed supervisor benchmark
// (cmd/dsupbench): a cohort node that runs a distributed supervisor of
// counters and, optionally, a singleton worker, started as a child process
// of a coordinator that holds (or joins) etcd, places children, kills nodes
// and measures.
//
// A program that uses it calls MaybeRunNode first thing in main (or in
// TestMain): when the process was started as a node by Spawn, that call runs
// the node and exits.
package demonode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

// EnvConfig is the environment variable that carries a node process's
// NodeConfig (JSON). Its presence makes MaybeRunNode run the node.
const EnvConfig = "COHORT_DEMONODE"

const (
	// Kind is the kind of the counters, registered on every node.
	Kind = "counter"
	// SingletonID is the id, and global name, of the singleton worker.
	SingletonID = "worker"
	// ControlName is the local name of each node's control actor, which
	// answers StatsRequest and Probe.
	ControlName = "demonode.control"
)

// NodeConfig configures one node process.
type NodeConfig struct {
	ID        string        `json:"id"`
	Endpoints []string      `json:"endpoints"`
	Cluster   string        `json:"cluster"`
	LeaseTTL  time.Duration `json:"lease_ttl"`
	// Supervisor is the distributed supervisor's name.
	Supervisor string `json:"supervisor"`
	// MoveBatch and StableWindow are passed to DistributedOptions.
	MoveBatch    int           `json:"move_batch,omitempty"`
	StableWindow time.Duration `json:"stable_window,omitempty"`
	// Singleton makes the node a candidate for the singleton worker.
	Singleton bool `json:"singleton,omitempty"`
	// Warnings sends the node's warnings and errors to standard error.
	Warnings bool `json:"warnings,omitempty"`
	// CPUProfile, if set, is a file the node writes its CPU profile to,
	// from ready until it exits on "exit" or stops.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// Add adds N to a counter; the reply is a Reply.
type Add struct{ N int64 }

// Reply is a counter's answer: where it runs and its value.
type Reply struct {
	Node string
	N    int64
}

// StatsRequest asks a node's control actor for its Stats.
type StatsRequest struct{}

// Probe asks a node's control actor to call the counters IDs, from that
// node, each with Add{N}; the reply is a ProbeResult.
type Probe struct {
	IDs []string
	N   int64
}

// ProbeResult has one reply, or one error, per probed counter, in order.
type ProbeResult struct {
	Replies []Reply
	Errors  []string
}

// StartCounters asks a node's control actor to start N counters, with
// ids Prefix followed by First, First+1, ... (six digits), through
// StartChildren from Writers goroutines, without waiting: the reply is an
// empty StartStatus at once, and StartStatusRequest tells when the start
// is done.
type StartCounters struct {
	Prefix         string
	First, N       int
	Writers        int
	TimeoutSeconds int
}

// StartStatusRequest asks a node's control actor how its last
// StartCounters went; the reply is a StartStatus.
type StartStatusRequest struct{}

// StartStatus reports a StartCounters: Done once every StartChildren
// returned, how long they took, and the first error.
type StartStatus struct {
	Done bool
	Took time.Duration
	Err  string
}

// Stats is a node's count of its counters.
type Stats struct {
	// Local is how many counters run on the node now.
	Local int64
	// Started counts counter starts on the node (first starts, restarts
	// and failovers); Moved counts starts with handed-off state.
	Started, Moved int64
	// CPU is the processor time the node process has used so far.
	CPU time.Duration
}

// cpuTime is the processor time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func init() {
	actor.MustRegisterType[Add]("demonode.Add")
	actor.MustRegisterType[Reply]("demonode.Reply")
	actor.MustRegisterType[Stats]("demonode.Stats")
	actor.MustRegisterType[StatsRequest]("demonode.StatsRequest")
	actor.MustRegisterType[Probe]("demonode.Probe")
	actor.MustRegisterType[ProbeResult]("demonode.ProbeResult")
	actor.MustRegisterType[StartCounters]("demonode.StartCounters")
	actor.MustRegisterType[StartStatusRequest]("demonode.StartStatusRequest")
	actor.MustRegisterType[StartStatus]("demonode.StartStatus")
}

// Counter is the distributed child: it adds, and hands its value off when
// it moves.
type Counter struct {
	node string
	n    int64
}

// Init takes the handed-off value, if any.
func (c *Counter) Init(_ *actor.Context, args any) error {
	ia, _ := args.(supervisor.InitArgs)
	if ia.Handoff != nil {
		n, err := strconv.ParseInt(string(ia.Handoff), 10, 64)
		if err != nil {
			return fmt.Errorf("counter %s: bad handoff %q: %w", ia.ID, ia.Handoff, err)
		}
		c.n = n
	}
	return nil
}

// HandleCall adds and answers where the counter runs.
func (c *Counter) HandleCall(_ *actor.Context, msg any) (any, error) {
	m, ok := msg.(Add)
	if !ok {
		return nil, actor.ErrUnhandled
	}
	c.n += m.N
	return Reply{Node: c.node, N: c.n}, nil
}

// Handoff hands the value to the next instance on a planned move.
func (c *Counter) Handoff(*actor.Context) ([]byte, error) {
	return strconv.AppendInt(nil, c.n, 10), nil
}

// worker is the singleton: it answers where it runs and since when.
type worker struct {
	node  string
	since time.Time
}

func (w *worker) Init(*actor.Context, any) error { w.since = time.Now(); return nil }

func (w *worker) HandleCall(*actor.Context, any) (any, error) {
	return Reply{Node: w.node, N: time.Since(w.since).Milliseconds()}, nil
}

// warnLogger writes warnings and errors to standard error, one line each.
func warnLogger() *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zap.WarnLevel)
	return zap.New(core)
}

func probe(ctx context.Context, sup *supervisor.Distributed, p Probe) ProbeResult {
	var r ProbeResult
	for _, id := range p.IDs {
		v, err := sup.Call(ctx, id, Add{N: p.N})
		rep, ok := v.(Reply)
		if err == nil && !ok {
			err = fmt.Errorf("counter %s answered %T", id, v)
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		r.Replies = append(r.Replies, rep)
		r.Errors = append(r.Errors, msg)
	}
	return r
}

// MaybeRunNode runs this process as a node and exits, if it was started as
// one (EnvConfig is set); otherwise it returns at once.
func MaybeRunNode() {
	raw := os.Getenv(EnvConfig)
	if raw == "" {
		return
	}
	var cfg NodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "demonode: bad", EnvConfig+":", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := RunNode(ctx, cfg, os.Stdin, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "node %s: %v\n", cfg.ID, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startCounters runs a StartCounters on sup and returns how long it took.
func startCounters(ctx context.Context, sup *supervisor.Distributed, m StartCounters) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(m.TimeoutSeconds, 1))*time.Second)
	defer cancel()
	specs := make([]supervisor.ChildSpec, m.N)
	for i := range specs {
		specs[i] = supervisor.ChildSpec{ID: fmt.Sprintf("%s%06d", m.Prefix, m.First+i), Kind: Kind}
	}
	writers := max(m.Writers, 1)
	share := (len(specs) + writers - 1) / writers
	errs := make([]error, writers)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range writers {
		part := specs[min(i*share, len(specs)):min((i+1)*share, len(specs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = sup.StartChildren(ctx, part)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// RunNode runs a node: it starts it, registers the counter kind, starts the
// distributed supervisor (and the singleton, if asked), writes "ready" to
// out, and serves until in says "exit" (leave at once, as a crash would:
// no graceful stop), in ends (graceful stop: the node's children are handed
// to the others), or ctx ends (graceful stop). It closes in before it
// returns.
func RunNode(ctx context.Context, cfg NodeConfig, in io.ReadCloser, out io.Writer) (err error) {
	defer in.Close()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var log *zap.Logger
	if cfg.Warnings {
		log = warnLogger()
	}
	n, err := cohort.Start(startCtx, cohort.Config{NodeID: cfg.ID, Cluster: cfg.Cluster, Endpoints: cfg.Endpoints,
		LeaseTTL: cfg.LeaseTTL, Logger: log})
	if err != nil {
		return err
	}
	graceful := true
	defer func() {
		if graceful {
			stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = errors.Join(err, n.Stop(stopCtx))
		}
	}()
	var started, moved, stopped atomic.Int64
	listener := func(e supervisor.DistEvent) {
		switch e.Type {
		case supervisor.DistChildStarted:
			started.Add(1)
		case supervisor.DistChildMoved:
			started.Add(1)
			moved.Add(1)
		case supervisor.DistChildStopped:
			stopped.Add(1)
		}
	}
	if err := n.RegisterKind(Kind, func() actor.Actor { return &Counter{node: cfg.ID} }); err != nil {
		return err
	}
	sup, err := n.DistributedSupervisor(startCtx, cfg.Supervisor, supervisor.DistributedOptions{
		MoveBatch: cfg.MoveBatch, StableWindow: cfg.StableWindow, Listener: listener,
	})
	if err != nil {
		return err
	}
	var startMu sync.Mutex
	var startStatus StartStatus
	// A start runs until done, its timeout, or the node's end, and the
	// node waits for it before it stops.
	runCtx, cancelStarts := context.WithCancel(ctx)
	var starts sync.WaitGroup
	defer func() { cancelStarts(); starts.Wait() }()
	control := actor.Func(func(ctx *actor.Context, msg any) (any, error) {
		switch m := msg.(type) {
		case StartCounters:
			startMu.Lock()
			startStatus = StartStatus{}
			startMu.Unlock()
			starts.Add(1)
			go func() {
				defer starts.Done()
				took, err := startCounters(runCtx, sup, m)
				startMu.Lock()
				startStatus = StartStatus{Done: true, Took: took}
				if err != nil {
					startStatus.Err = err.Error()
				}
				startMu.Unlock()
			}()
			return StartStatus{}, nil
		case StartStatusRequest:
			startMu.Lock()
			defer startMu.Unlock()
			return startStatus, nil
		case StatsRequest:
			s := started.Load()
			return Stats{Local: s - stopped.Load(), Started: s, Moved: moved.Load(), CPU: cpuTime()}, nil
		case Probe:
			return probe(ctx.Context(), sup, m), nil
		}
		return nil, actor.ErrUnhandled
	})
	if _, err := n.System().Spawn(startCtx, control, actor.Options{Name: ControlName}); err != nil {
		return err
	}
	if cfg.Singleton {
		w := supervisor.Spawn(SingletonID, func() actor.Actor { return &worker{node: cfg.ID} }, actor.Options{})
		if _, err := n.Supervise(startCtx, n.Singleton(w)); err != nil {
			return err
		}
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			err = errors.Join(err, f.Close())
		}()
	}
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	lines := make(chan string)
	done := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	defer func() {
		close(done)
		_ = in.Close()
		<-readerDone
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if line == "exit" {
				graceful = false
				return nil
			}
		}
	}
}
