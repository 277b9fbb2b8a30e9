package actor

import (
	"context"
	"fmt"
)

// Remote carries calls, casts, sends and monitors to actors on other nodes.
// The transport between nodes implements it and System.SetRemote plugs it
// in; the actor package itself knows nothing of networks. A Remote must
// report failure rather than hang: a call to a node that goes away fails
// with the transport's node-down error, not at its deadline.
type Remote interface {
	// Call delivers a call to the actor at to and returns its reply.
	Call(ctx context.Context, to Ref, msg any) (any, error)
	// Cast delivers a cast; it may return before the message arrives.
	Cast(ctx context.Context, to Ref, msg any) error
	// Send delivers a raw message; it must not block on the network.
	Send(to Ref, msg any) error
	// Taken delivers a cast (or, with info, a raw message for HandleInfo)
	// and returns once the actor has taken it from its mailbox, failing as
	// Call does (System.CastTaken).
	Taken(ctx context.Context, to Ref, msg any, info bool) error
	// Monitor calls down once, with the exit reason, when the actor at
	// target exits or its node goes away. cancel stops the monitor; after
	// cancel returns, down is not called.
	Monitor(target Ref, down func(reason error)) (cancel func())
	// Stop stops the actor at to with reason, as System.Stop does on its
	// node, and returns once it has exited, failing as Call does (with
	// ctx's error when ctx ends first); with kill, it kills it
	// (System.Kill), returns once the kill is on its way, and never
	// blocks, failing as Send does.
	Stop(ctx context.Context, to Ref, reason error, kill bool) error
}

// SetRemote plugs in the transport used for Refs of other nodes. It must be
// called before the system is used across nodes; a nil Remote makes such
// Refs fail with ErrRemoteNode again.
func (s *System) SetRemote(r Remote) {
	if r == nil {
		s.remote.Store(nil)
		return
	}
	s.remote.Store(&r)
}

func (s *System) remoteFor(ref Ref) Remote {
	if ref.Node == s.node {
		return nil
	}
	if r := s.remote.Load(); r != nil {
		return *r
	}
	return nil
}

// MonitorFunc watches target and calls fn once, with the Down, when target
// exits (at once if it is not alive), unless Demonitor is called first. fn
// runs on the exiting actor's goroutine (or the caller's) and must not
// block. For a Ref on another node the monitor goes through the Remote.
func (s *System) MonitorFunc(target Ref, fn func(Down)) MonitorRef {
	return s.monitor(target, watcher{fn: fn})
}

// CallAsync delivers a call to a local actor and returns at once; reply is
// called exactly once: with the actor's reply, with an *ExitError if the
// actor exits first, or with the deadline error if ctx's deadline passes
// before the actor takes the call. It is what a transport uses to serve
// calls arriving from other nodes without a goroutine per call. A reply the
// actor defers and never sends leaves reply uncalled.
func (s *System) CallAsync(ctx context.Context, to Target, msg any, reply func(val any, err error)) error {
	r, err := s.CallAsyncLend(ctx, to, msg, reply)
	if r.p != nil {
		go r.p.run()
	}
	return err
}

// Runner is an idle actor that a delivery woke and left for its caller to
// run: see CallAsyncLend.
type Runner struct{ p *process }

// Woken reports whether the delivery left an actor to run.
func (r Runner) Woken() bool { return r.p != nil }

// Run handles the actor's mailbox on the calling goroutine until it is
// empty or the actor exits. It must be called exactly once for a woken
// Runner, and it may take as long as the actor's handlers do.
func (r Runner) Run() { r.p.run() }

// CallAsyncLend is CallAsync for a caller that lends its goroutine: when
// the call wakes an idle actor, the actor is not started on a goroutine of
// its own but returned, and the caller must Run it (on its goroutine, or
// on any other). A transport that runs the callee on the goroutine that
// read the call saves a hand-off between goroutines per call.
func (s *System) CallAsyncLend(ctx context.Context, to Target, msg any, reply func(val any, err error)) (Runner, error) {
	return s.asyncLend(ctx, to, msg, kindCall, reply)
}

// TakenAsyncLend is CallAsyncLend for CastTaken (SendTaken with info):
// reply is called with nil once the actor has taken msg, or with the
// error that says why it did not.
func (s *System) TakenAsyncLend(ctx context.Context, to Target, msg any, info bool, reply func(val any, err error)) (Runner, error) {
	k := kindCastTaken
	if info {
		k = kindInfoTaken
	}
	return s.asyncLend(ctx, to, msg, k, reply)
}

func (s *System) asyncLend(ctx context.Context, to Target, msg any, k kind, reply func(val any, err error)) (Runner, error) {
	p, err := s.resolveLocal(ctx, to)
	if err != nil {
		return Runner{}, err
	}
	if err := p.unhandled(k); err != nil {
		return Runner{}, err
	}
	var mon MonitorRef
	r := NewReplyTo(func(val any, err error) bool {
		s.Demonitor(mon)
		reply(val, err)
		return true
	})
	env := envelope{msg: msg, slot: r.slot, tag: uint64(k)}
	if d, ok := ctx.Deadline(); ok {
		r.slot.deadline = d.UnixNano()
	}
	mon = s.monitor(p.ref, watcher{fn: func(d Down) {
		r.Reply(nil, &ExitError{Ref: d.Ref, Reason: d.Reason})
	}})
	woken, err := p.enqueue(ctx, env, false)
	if err != nil {
		s.Demonitor(mon)
		return Runner{}, err
	}
	if woken {
		return Runner{p}, nil
	}
	return Runner{}, nil
}

// resolveLocal resolves a target that must be on this node.
func (s *System) resolveLocal(ctx context.Context, to Target) (*process, error) {
	p, ref, err := s.resolve(ctx, to)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: %v (this node is %s)", ErrRemoteNode, ref, s.node)
	}
	return p, nil
}
