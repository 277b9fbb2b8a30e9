package supervisor

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// Spec and owner values are JSON, exactly as encoding/json writes them.
// Every node decodes every spec and owner key of the supervisor as its
// watch delivers them, so the common form is written and read here
// without reflection; any value outside that form (a string that needs
// escaping, fields in another order, a value written by another version)
// goes through encoding/json, which reads and writes the same bytes.

// encodeSpec returns the JSON of s.
func encodeSpec(s ChildSpec) ([]byte, error) {
	if !plain(s.ID) || !plain(s.Kind) || !plain(s.Node) {
		return json.Marshal(s)
	}
	b := make([]byte, 0, 32+len(s.ID)+len(s.Kind)+len(s.Node)+base64.StdEncoding.EncodedLen(len(s.Args)))
	b = append(append(append(b, `{"id":"`...), s.ID...), `","kind":"`...)
	b = append(append(b, s.Kind...), '"')
	if len(s.Args) > 0 {
		b = append(b, `,"args":"`...)
		b = base64.StdEncoding.AppendEncode(b, s.Args)
		b = append(b, '"')
	}
	if s.Restart != 0 {
		b = strconv.AppendUint(append(b, `,"restart":`...), uint64(s.Restart), 10)
	}
	if s.Shutdown != 0 {
		b = strconv.AppendInt(append(b, `,"shutdown":`...), int64(s.Shutdown), 10)
	}
	if s.Node != "" {
		b = append(append(append(b, `,"node":"`...), s.Node...), '"')
	}
	return append(b, '}'), nil
}

// decodeSpec decodes the JSON of a spec.
func decodeSpec(b []byte) (ChildSpec, bool) { return decodeSpecIn(b, "", nil) }

// decodeSpecIn decodes the JSON of a spec stored under id, taking the id
// from there and the other strings from names, when they match, instead
// of copying them: every node holds every spec.
func decodeSpecIn(b []byte, id string, names *internTable) (ChildSpec, bool) {
	if s, ok := parseSpec(b, id, names); ok {
		return s, true
	}
	return decode[ChildSpec](b)
}

func parseSpec(b []byte, id string, names *internTable) (s ChildSpec, ok bool) {
	p := parser{b: b, ok: true, names: names}
	if !p.lit(`{"id":`) {
		return s, false
	}
	if raw := p.raw(); string(raw) == id {
		s.ID = id
	} else {
		s.ID = string(raw)
	}
	if !p.lit(`,"kind":`) {
		return s, false
	}
	s.Kind = p.name()
	if p.lit(`,"args":`) {
		raw := p.raw()
		if !p.ok || len(raw) == 0 {
			return s, false
		}
		args, err := base64.StdEncoding.AppendDecode(nil, raw)
		if err != nil {
			return s, false
		}
		s.Args = args
	}
	if p.lit(`,"restart":`) {
		n := p.uint()
		if n > 255 {
			return s, false
		}
		s.Restart = Restart(n)
	}
	if p.lit(`,"shutdown":`) {
		s.Shutdown = time.Duration(p.int())
	}
	if p.lit(`,"node":`) {
		s.Node = p.name()
	}
	return s, p.end()
}

// encodeOwner returns the JSON of o.
func encodeOwner(o owner) []byte {
	if !plain(o.Node) || !plain(o.Ref.Node) {
		b, _ := json.Marshal(o)
		return b
	}
	b := make([]byte, 0, 64+len(o.Node)+len(o.Ref.Node))
	b = append(append(append(b, `{"node":"`...), o.Node...), `","ref":{"node":"`...)
	b = append(append(b, o.Ref.Node...), `","id":`...)
	b = strconv.AppendUint(b, o.Ref.ID, 10)
	b = strconv.AppendUint(append(b, `,"inc":`...), o.Ref.Incarnation, 10)
	return append(b, "}}"...)
}

// decodeOwner decodes the JSON of an owner.
func decodeOwner(b []byte) (owner, bool) { return decodeOwnerIn(b, nil) }

// decodeOwnerIn decodes the JSON of an owner, taking its node names from
// names.
func decodeOwnerIn(b []byte, names *internTable) (owner, bool) {
	p := parser{b: b, ok: true, names: names}
	var o owner
	if p.lit(`{"node":`) {
		o.Node = p.name()
		if p.lit(`,"ref":{"node":`) {
			o.Ref = actor.Ref{Node: p.name()}
			if p.lit(`,"id":`) {
				o.Ref.ID = p.uint()
				if p.lit(`,"inc":`) {
					o.Ref.Incarnation = p.uint()
					if p.lit("}") && p.end() {
						return o, true
					}
				}
			}
		}
	}
	return decode[owner](b)
}

// plain reports whether encoding/json writes s between quotes as it is:
// printable ASCII without quote, backslash or the characters it escapes
// for HTML.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// parser reads the JSON that encodeSpec and encodeOwner write; ok turns
// false at the first byte outside that form.
type parser struct {
	b     []byte
	i     int
	ok    bool
	names *internTable
}

// lit consumes s if the input continues with it.
func (p *parser) lit(s string) bool {
	if !p.ok || len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// raw returns the bytes of a string without escapes.
func (p *parser) raw() []byte {
	if !p.ok || p.i >= len(p.b) || p.b[p.i] != '"' {
		p.ok = false
		return nil
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s
		case c == '\\' || c < 0x20 || c > 0x7e:
			p.ok = false
			return nil
		}
	}
	p.ok = false
	return nil
}

// name reads a string that recurs across values (a node, a kind).
func (p *parser) name() string {
	raw := p.raw()
	if p.names == nil {
		return string(raw)
	}
	return p.names.get(raw)
}

// internTable hands out one copy of each string it is asked for, up to
// a bound; past it, fresh copies.
type internTable struct {
	mu sync.Mutex
	m  map[string]string
}

// maxInterned bounds an internTable: node ids and kinds are few, and a
// table that filled up with something else stops growing.
const maxInterned = 4096

func (t *internTable) get(b []byte) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(t.m) < maxInterned {
		if t.m == nil {
			t.m = make(map[string]string)
		}
		t.m[s] = s
	}
	return s
}

func (p *parser) uint() uint64 {
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	if !p.ok || j == p.i || (p.b[p.i] == '0' && j-p.i > 1) {
		p.ok = false
		return 0
	}
	var n uint64
	for _, c := range p.b[p.i:j] {
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			p.ok = false
			return 0
		}
		n = n*10 + d
	}
	p.i = j
	return n
}

func (p *parser) int() int64 {
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	if neg {
		p.i++
	}
	u := p.uint()
	if neg {
		if u > 1<<63 {
			p.ok = false
		}
		return -int64(u)
	}
	if u > 1<<63-1 {
		p.ok = false
	}
	return int64(u)
}

// end reports whether the input was read whole: a closing brace and
// nothing after it.
func (p *parser) end() bool {
	return p.lit("}") && p.i == len(p.b)
}
