package etcdtest

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyMode is what happens to bytes; a larger mode is a worse link.
type proxyMode int

const (
	forwarding proxyMode = iota
	repliesHeld
	paused
	cut
)

// Proxy is a TCP proxy in front of one address that a test can break on
// purpose. Point a client at Addr instead of the target; then Cut the link
// (connections drop, new ones are refused), Pause it (connections stay open
// but no byte moves in either direction, so requests and keepalives go
// unanswered), hold only its replies (HoldReplies: requests are carried
// out, their answers not seen), and Heal it. With ProxyOptions.Source,
// the same can be done to the connections of one source only (CutFrom,
// PauseFrom, HealFrom), leaving the others alone. Its methods are safe to
// call from several goroutines.
type Proxy struct {
	ln     net.Listener
	source func(net.Conn) string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	target  string
	mode    proxyMode
	bySrc   map[string]proxyMode // sources cut or paused on their own
	changed chan struct{}        // closed and replaced on every mode change
	conns   map[*proxyConn]struct{}
}

// ProxyOptions configure a proxy. The zero value is NewProxy's.
type ProxyOptions struct {
	// Source names where an accepted connection comes from. It is called
	// once per connection, before any byte is forwarded; its result is the
	// source CutFrom, PauseFrom and HealFrom select. Default: every
	// connection's source is "".
	Source func(net.Conn) string
}

type proxyConn struct {
	client, server net.Conn
	src            string
	once           sync.Once
	done           chan struct{}
	cancel         context.CancelFunc // ends the dial to the target
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		pc.cancel()
		close(pc.done)
		_ = pc.client.Close()
		if pc.server != nil {
			_ = pc.server.Close()
		}
	})
}

// NewProxy listens on a free loopback port and forwards every connection to
// target, given as "host:port" or as a URL such as "http://host:port". It
// registers a cleanup that closes the listener and every connection and
// waits for its goroutines. It fails t if it cannot listen.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return NewProxyWith(t, target, ProxyOptions{})
}

// NewProxyWith is NewProxy with options.
func NewProxyWith(t testing.TB, target string, o ProxyOptions) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: proxy listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  hostPort(target),
		ln:      ln,
		source:  o.Source,
		ctx:     ctx,
		cancel:  cancel,
		bySrc:   make(map[string]proxyMode),
		changed: make(chan struct{}),
		conns:   make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func hostPort(target string) string {
	if i := strings.Index(target, "://"); i >= 0 {
		return target[i+3:]
	}
	return target
}

// Addr returns the proxy's "host:port", usable as a client endpoint.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget makes connections accepted from now on go to target (as in
// NewProxy); open connections keep their target.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = hostPort(target)
}

// Cut drops every open connection and refuses new ones (they are accepted
// and closed at once) until Heal.
func (p *Proxy) Cut() {
	p.setMode(cut)
	p.drop(func(*proxyConn) bool { return true })
}

// CutFrom is Cut for the connections of one source (see
// ProxyOptions.Source) until HealFrom(src): they are dropped, and new ones
// from src refused, while other sources go on.
func (p *Proxy) CutFrom(src string) {
	p.setSourceMode(src, cut)
	p.drop(func(pc *proxyConn) bool { return pc.src == src })
}

// PauseFrom is Pause for the connections of one source until
// HealFrom(src) (or CutFrom(src)).
func (p *Proxy) PauseFrom(src string) { p.setSourceMode(src, paused) }

// HealFrom ends a CutFrom or PauseFrom of src: its new connections are
// forwarded and its held bytes delivered, unless the whole proxy is cut or
// paused.
func (p *Proxy) HealFrom(src string) { p.setSourceMode(src, forwarding) }

// drop closes the open connections that match and forgets them.
func (p *Proxy) drop(match func(*proxyConn) bool) {
	var closing []*proxyConn
	p.mu.Lock()
	for pc := range p.conns {
		if match(pc) {
			closing = append(closing, pc)
			delete(p.conns, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range closing {
		pc.close()
	}
}

// Pause stops moving bytes in both directions without closing anything:
// open and new connections stay up, and what either side sends is held
// until Resume or Heal, or dropped by Cut.
func (p *Proxy) Pause() { p.setMode(paused) }

// HoldReplies holds what the target sends back while what clients send
// still reaches it: requests are carried out and their answers are not
// seen, as when a link fails after a request went through. Held bytes are
// delivered by Heal and dropped by Cut.
func (p *Proxy) HoldReplies() { p.setMode(repliesHeld) }

// Resume ends a Pause: held bytes are delivered and forwarding goes on. It
// also ends a Cut; it is the same as Heal.
func (p *Proxy) Resume() { p.setMode(forwarding) }

// Heal ends a Cut or a Pause: new connections are forwarded again, and
// bytes held by a Pause are delivered.
func (p *Proxy) Heal() { p.setMode(forwarding) }

// Conns returns the number of connections currently being forwarded (or
// held).
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Proxy) setMode(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) setSourceMode(src string, m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == forwarding {
		delete(p.bySrc, src)
	} else {
		p.bySrc[src] = m
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// modeOf is the mode that applies to a connection from src: the proxy's,
// or its source's if that is worse. p.mu must be held.
func (p *Proxy) modeOf(src string) proxyMode {
	return max(p.mode, p.bySrc[src])
}

func (p *Proxy) close() {
	p.cancel()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// A transient accept error; do not spin on it.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		p.mu.Lock()
		refuse := p.mode == cut
		p.mu.Unlock()
		if refuse {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	cctx, ccancel := context.WithCancel(p.ctx)
	pc := &proxyConn{client: c, done: make(chan struct{}), cancel: ccancel}
	if p.source != nil {
		pc.src = p.source(c)
	}
	p.mu.Lock()
	if p.modeOf(pc.src) == cut {
		p.mu.Unlock()
		pc.close()
		return
	}
	target := p.target
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
		pc.close()
	}()

	dctx, cancel := context.WithTimeout(cctx, 5*time.Second)
	var d net.Dialer
	s, err := d.DialContext(dctx, "tcp", target)
	cancel()
	if err != nil {
		return
	}
	p.mu.Lock()
	_, live := p.conns[pc]
	if live {
		pc.server = s
	}
	p.mu.Unlock()
	if !live {
		_ = s.Close()
		return
	}
	// pc.close may have run between the dial and the lock above without
	// seeing the server side; close it here in that case.
	select {
	case <-pc.done:
		_ = s.Close()
		return
	default:
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(pc, s, c, false)
	}()
	go func() {
		defer wg.Done()
		p.pipe(pc, c, s, true)
	}()
	wg.Wait()
}

// pipe copies src to dst until either side fails or the connection is
// closed, holding each chunk while the proxy is paused (or, for replies
// from the target, while it holds them).
func (p *Proxy) pipe(pc *proxyConn, dst, src net.Conn, reply bool) {
	defer pc.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(pc, reply) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate waits until bytes (replies from the target, if reply) may move; it
// reports false when the connection is to be dropped instead.
func (p *Proxy) gate(pc *proxyConn, reply bool) bool {
	for {
		p.mu.Lock()
		mode, changed := p.modeOf(pc.src), p.changed
		p.mu.Unlock()
		switch {
		case mode == forwarding, mode == repliesHeld && !reply:
			return true
		case mode == cut:
			return false
		}
		select {
		case <-changed:
		case <-pc.done:
			return false
		}
	}
}
