package supervisor

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/cohort-go/cohort/actor"
)

// The fast spec and owner codec writes exactly the bytes encoding/json
// writes, and reads back what encoding/json reads, for any value.

func sampleSpecs() []ChildSpec {
	return []ChildSpec{
		{},
		{ID: "c000001", Kind: "counter"},
		{ID: "a", Kind: "k", Args: []byte{0, 1, 2, 255}, Restart: Transient, Shutdown: 5 * time.Second, Node: "node-1"},
		{ID: "x", Kind: "k", Restart: Temporary, Shutdown: BrutalKill},
		{ID: "x", Kind: "k", Shutdown: math.MinInt64},
		{ID: "x", Kind: "k", Shutdown: math.MaxInt64, Restart: 255},
		{ID: `quote"d`, Kind: `back\slash`, Node: "<html>&"},
		{ID: "ünïcode", Kind: "日本", Node: "tab\there"},
		{ID: "user:42/x.y_z-1~!", Kind: "counter", Args: []byte(`{"json":"args"}`)},
	}
}

func TestSpecCodecMatchesJSON(t *testing.T) {
	specs := sampleSpecs()
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		specs = append(specs, randomSpec(r))
	}
	for _, s := range specs {
		got, err := encodeSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeSpec(%+v) = %s, encoding/json writes %s", s, got, want)
		}
		back, ok := decodeSpec(got)
		var viaJSON ChildSpec
		if !ok || json.Unmarshal(want, &viaJSON) != nil || !reflect.DeepEqual(back, viaJSON) {
			t.Fatalf("decodeSpec(%s) = %+v, %v; encoding/json reads %+v", got, back, ok, viaJSON)
		}
	}
}

func TestOwnerCodecMatchesJSON(t *testing.T) {
	owners := []owner{{}, {Node: "node-1", Ref: actor.Ref{Node: "node-1", ID: 7, Incarnation: 1}},
		{Node: "n", Ref: actor.Ref{Node: "n", ID: math.MaxUint64, Incarnation: math.MaxUint64}},
		{Node: `we"ird`, Ref: actor.Ref{Node: "ü", ID: 1}}}
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		owners = append(owners, owner{Node: randomString(r), Ref: actor.Ref{Node: randomString(r), ID: r.Uint64() >> r.IntN(64), Incarnation: r.Uint64() >> r.IntN(64)}})
	}
	for _, o := range owners {
		got := encodeOwner(o)
		want, _ := json.Marshal(o)
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeOwner(%+v) = %s, encoding/json writes %s", o, got, want)
		}
		var viaJSON owner
		if back, ok := decodeOwner(got); !ok || json.Unmarshal(want, &viaJSON) != nil || back != viaJSON {
			t.Fatalf("decodeOwner(%s) = %+v, %v; encoding/json reads %+v", got, back, ok, viaJSON)
		}
	}
}

// Values in another form than the one written here (reordered, spaced,
// escaped, with unknown fields) read as encoding/json reads them, and
// malformed ones fail.
func TestCodecReadsOtherForms(t *testing.T) {
	for _, in := range []string{
		`{"kind":"k","id":"a"}`,
		`{ "id" : "a", "kind" : "k", "restart" : 2 }`,
		`{"id":"a\u0041","kind":"k","extra":[1,2]}`,
		`{"id":"a","kind":"k","shutdown":-1,"node":"n","args":"AAE="}`,
		`{"id":"a","kind":"k","restart":007}`,
		`{"id":"a","kind":"k","restart":256}`,
		`{"id":"a","kind":"k","shutdown":99999999999999999999}`,
		`{"id":"a","kind":"k","args":"not base64!"}`,
		`{"id":"a","kind":"k"}trailing`,
		`{"id":"a","kind":"k"`,
		`{"id":"a","kind":"k","args":""}`,
		`null`, ``, `[]`,
	} {
		got, ok := decodeSpec([]byte(in))
		var want ChildSpec
		wantOK := json.Unmarshal([]byte(in), &want) == nil
		if ok != wantOK || (ok && !reflect.DeepEqual(got, want)) {
			t.Errorf("decodeSpec(%s) = %+v, %v; encoding/json: %+v, %v", in, got, ok, want, wantOK)
		}
	}
	for _, in := range []string{
		`{"ref":{"inc":2,"id":1,"node":"a"},"node":"a"}`,
		`{"node":"a","ref":{"node":"a","id":1,"inc":2}} `,
		`{"node":"a","ref":{"node":"a","id":18446744073709551616,"inc":2}}`,
		`{"node":"a","ref":{"node":"a","id":-1,"inc":2}}`,
		`{"node":"a","ref":{"node":"a","id":1,"inc":2}}}`,
		`{"node":"a"}`, `{}`, `x`,
	} {
		got, ok := decodeOwner([]byte(in))
		var want owner
		wantOK := json.Unmarshal([]byte(in), &want) == nil
		if ok != wantOK || (ok && got != want) {
			t.Errorf("decodeOwner(%s) = %+v, %v; encoding/json: %+v, %v", in, got, ok, want, wantOK)
		}
	}
}

func FuzzDecodeSpec(f *testing.F) {
	for _, s := range sampleSpecs() {
		b, _ := json.Marshal(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := decodeSpec(in)
		var want ChildSpec
		wantOK := json.Unmarshal(in, &want) == nil
		if ok != wantOK || (ok && !reflect.DeepEqual(got, want)) {
			t.Fatalf("decodeSpec(%q) = %+v, %v; encoding/json: %+v, %v", in, got, ok, want, wantOK)
		}
	})
}

func randomString(r *rand.Rand) string {
	const alphabet = "abcXYZ019-_:./ \"\\<>&\x01\x7fé"
	b := make([]byte, r.IntN(12))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	if r.IntN(2) == 0 {
		// Mostly plain strings, the common case.
		for i := range b {
			b[i] = alphabet[r.IntN(15)]
		}
	}
	return string(b)
}

func randomSpec(r *rand.Rand) ChildSpec {
	s := ChildSpec{ID: randomString(r), Kind: randomString(r), Node: randomString(r), Restart: Restart(r.IntN(256))}
	if r.IntN(2) == 0 {
		s.Args = []byte(randomString(r))
	}
	if r.IntN(2) == 0 {
		s.Shutdown = time.Duration(r.Int64() >> r.IntN(64))
		if r.IntN(2) == 0 {
			s.Shutdown = -s.Shutdown
		}
	}
	return s
}

// Specs and owners decoded for the mirror share the id of their key and
// one copy of each node name and kind.
func TestDecodeSharesStrings(t *testing.T) {
	var names internTable
	id := string([]byte("c000042"))
	b, _ := encodeSpec(ChildSpec{ID: "c000042", Kind: "counter", Node: "node-1"})
	s1, ok1 := decodeSpecIn(b, id, &names)
	s2, ok2 := decodeSpecIn(b, id, &names)
	o, ok3 := decodeOwnerIn(encodeOwner(owner{Node: "node-1", Ref: actor.Ref{Node: "node-1", ID: 1}}), &names)
	if !ok1 || !ok2 || !ok3 || !reflect.DeepEqual(s1, s2) {
		t.Fatalf("decoded %+v %v, %+v %v, %+v %v", s1, ok1, s2, ok2, o, ok3)
	}
	if unsafe.StringData(s1.ID) != unsafe.StringData(id) {
		t.Error("the spec's id is a copy, not its key's")
	}
	if unsafe.StringData(s1.Kind) != unsafe.StringData(s2.Kind) || unsafe.StringData(s1.Node) != unsafe.StringData(o.Ref.Node) ||
		unsafe.StringData(o.Node) != unsafe.StringData(o.Ref.Node) {
		t.Error("names are copied per value")
	}
	// A spec whose id differs from its key's keeps its own.
	if s, _ := decodeSpecIn(b, "other", &names); s.ID != "c000042" {
		t.Errorf("id %q", s.ID)
	}
}
