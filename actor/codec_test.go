package actor_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cohort-go/cohort/actor"
)

type codecPoint struct {
	X, Y int
	Tag  string
}

type codecOther struct{ A int }

type unregisteredMsg struct{ A int }

var errCodecTest = errors.New("codec test: quota exceeded")

func TestCodecRegistry(t *testing.T) {
	if err := actor.RegisterType[codecPoint]("test.point"); err != nil {
		t.Fatal(err)
	}
	if err := actor.RegisterType[codecPoint]("test.point"); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	for _, err := range []error{
		actor.RegisterType[codecOther]("test.point"),
		actor.RegisterType[codecPoint]("test.point2"),
	} {
		if !errors.Is(err, actor.ErrTypeConflict) {
			t.Fatalf("conflict = %v", err)
		}
	}
	if err := actor.RegisterType[codecOther](""); !errors.Is(err, actor.ErrInvalidName) {
		t.Fatalf("empty name = %v", err)
	}
	if err := actor.RegisterType[error]("test.error"); !errors.Is(err, actor.ErrInvalidOption) {
		t.Fatalf("interface type = %v", err)
	}
	name, b, err := actor.EncodeMessage(nil, codecPoint{1, 2, "p"})
	if err != nil || name != "test.point" {
		t.Fatalf("encode = %q, %v", name, err)
	}
	v, err := actor.DecodeMessage(name, b)
	if err != nil || v != (codecPoint{1, 2, "p"}) {
		t.Fatalf("decode = %#v, %v", v, err)
	}
	_, _, err = actor.EncodeMessage(nil, unregisteredMsg{})
	if !errors.Is(err, actor.ErrUnregisteredType) || !strings.Contains(err.Error(), "actor_test.unregisteredMsg") ||
		!strings.Contains(err.Error(), "actor.RegisterType") {
		t.Fatalf("unregistered = %v", err)
	}
	if _, err := actor.DecodeMessage("no.such.type", nil); !errors.Is(err, actor.ErrUnknownType) {
		t.Fatalf("unknown = %v", err)
	}
	if _, err := actor.DecodeMessage("test.point", []byte("{")); !errors.Is(err, actor.ErrCodec) {
		t.Fatalf("bad bytes = %v", err)
	}
	if _, err := actor.DecodeMessage("int64", []byte{0x80}); !errors.Is(err, actor.ErrCodec) {
		t.Fatalf("bad varint = %v", err)
	}
}

func TestErrorsKeepTheirIdentityOnTheWire(t *testing.T) {
	if err := actor.RegisterError("test.quota", errCodecTest); err != nil {
		t.Fatal(err)
	}
	ref := actor.Ref{Node: "n", ID: 3, Incarnation: 5}
	cases := []struct {
		err  error
		want error
	}{
		{fmt.Errorf("%w: x", actor.ErrNotFound), actor.ErrNotFound},
		{fmt.Errorf("wrapped: %w", actor.ErrUnhandled), actor.ErrUnhandled},
		{fmt.Errorf("handler: %w", errCodecTest), errCodecTest},
		{context.DeadlineExceeded, context.DeadlineExceeded},
		{&actor.ExitError{Ref: ref, Reason: actor.Normal}, actor.Normal},
	}
	for _, c := range cases {
		got := actor.ErrorFromWire(actor.ErrorToWire(c.err))
		if !errors.Is(got, c.want) || got.Error() != c.err.Error() {
			t.Errorf("%v came back as %v", c.err, got)
		}
	}
	var ee *actor.ExitError
	if got := actor.ErrorFromWire(actor.ErrorToWire(&actor.ExitError{Ref: ref, Reason: errors.New("boom")})); !errors.As(got, &ee) || ee.Ref != ref || ee.Reason.Error() != "boom" {
		t.Fatalf("exit error = %#v", got)
	}
	plain := actor.ErrorFromWire(actor.ErrorToWire(errors.New("plain")))
	if plain.Error() != "plain" || errors.Unwrap(plain) != nil {
		t.Fatalf("plain error = %#v", plain)
	}
}

type (
	hiddenFields struct {
		secret string
		n      int
	}
	withChan  struct{ C chan int }
	signal    struct{}
	embedsOK  struct{ codecOther }
	skipsChan struct {
		A int
		C chan int `json:"-"`
	}
	cyclic struct {
		Next *cyclic
		V    int
	}
	marshals struct{ hidden int }
)

func (m marshals) MarshalJSON() ([]byte, error) { return []byte("1"), nil }

// A type JSON cannot carry is refused when it is registered, not found
// out at the first send, or never (a struct of unexported fields arrives
// empty).
func TestRegisterTypeRefusesWhatJSONCannotCarry(t *testing.T) {
	refused := map[string]error{
		"hidden fields":       actor.RegisterType[hiddenFields]("test.hidden"),
		"chan":                actor.RegisterType[chan int]("test.chan"),
		"func":                actor.RegisterType[func()]("test.func"),
		"struct with a chan":  actor.RegisterType[withChan]("test.withchan"),
		"slice of hidden":     actor.RegisterType[[]hiddenFields]("test.hiddenslice"),
		"complex":             actor.RegisterType[complex128]("test.complex"),
		"pointer to a struct": actor.RegisterType[*hiddenFields]("test.hiddenptr"),
		"protobuf by value":   actor.RegisterType[wrapperspb.Int32Value]("test.protovalue"),
	}
	for what, err := range refused {
		if !errors.Is(err, actor.ErrInvalidOption) {
			t.Errorf("register %s = %v, want ErrInvalidOption", what, err)
		}
	}
	if err := actor.RegisterType[hiddenFields]("test.hidden"); err == nil || !strings.Contains(err.Error(), "no exported field") {
		t.Errorf("register a struct of unexported fields = %v; want it to say why", err)
	}
	accepted := map[string]error{
		"empty struct":       actor.RegisterType[signal]("test.signal"),
		"embedded exported":  actor.RegisterType[embedsOK]("test.embeds"),
		"chan tagged out":    actor.RegisterType[skipsChan]("test.skipschan"),
		"cyclic type":        actor.RegisterType[cyclic]("test.cyclic"),
		"own MarshalJSON":    actor.RegisterType[marshals]("test.marshals"),
		"map of string":      actor.RegisterType[map[string]int]("test.map"),
		"pointer to exports": actor.RegisterType[*codecOther]("test.otherptr"),
	}
	for what, err := range accepted {
		if err != nil {
			t.Errorf("register %s = %v", what, err)
		}
	}
}
