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

type proxyMode int

const (
	forwarding proxyMode = iota
	paused
	cut
)

// Proxy is a TCP proxy in front of one address that a test can break on
// purpose. Point a client at Addr instead of the target; then Cut the link
// (connections drop, new ones are refused), Pause it (connections stay open
// but no byte moves in either direction, so requests and keepalives go
// unanswered), and Heal it. Its methods are safe to call from several
// goroutines.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    proxyMode
	changed chan struct{} // closed and replaced on every mode change
	conns   map[*proxyConn]struct{}
}

type proxyConn struct {
	client, server net.Conn
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
	if i := strings.Index(target, "://"); i >= 0 {
		target = target[i+3:]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: proxy listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  target,
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		conns:   make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's "host:port", usable as a client endpoint.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut drops every open connection and refuses new ones (they are accepted
// and closed at once) until Heal.
func (p *Proxy) Cut() {
	p.setMode(cut)
	p.mu.Lock()
	conns := p.conns
	p.conns = make(map[*proxyConn]struct{})
	p.mu.Unlock()
	for pc := range conns {
		pc.close()
	}
}

// Pause stops moving bytes in both directions without closing anything:
// open and new connections stay up, and what either side sends is held
// until Resume or Heal, or dropped by Cut.
func (p *Proxy) Pause() { p.setMode(paused) }

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
	p.mu.Lock()
	if p.mode == cut {
		p.mu.Unlock()
		pc.close()
		return
	}
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
	s, err := d.DialContext(dctx, "tcp", p.target)
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
		p.pipe(pc, s, c)
	}()
	go func() {
		defer wg.Done()
		p.pipe(pc, c, s)
	}()
	wg.Wait()
}

// pipe copies src to dst until either side fails or the connection is
// closed, holding each chunk while the proxy is paused.
func (p *Proxy) pipe(pc *proxyConn, dst, src net.Conn) {
	defer pc.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(pc) {
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

// gate waits until bytes may move; it reports false when the connection is
// to be dropped instead.
func (p *Proxy) gate(pc *proxyConn) bool {
	for {
		p.mu.Lock()
		mode, changed := p.mode, p.changed
		p.mu.Unlock()
		switch mode {
		case forwarding:
			return true
		case cut:
			return false
		}
		select {
		case <-changed:
		case <-pc.done:
			return false
		}
	}
}
