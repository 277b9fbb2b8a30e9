package actor

import (
	"context"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"

	"google.golang.org/protobuf/proto"
)

// The codec registry maps message types to names, so that a message sent to
// another node arrives as a value of the same Go type. Messages between
// actors of one node are never encoded.
//
// A type is registered under one name, the same on every node: the name,
// not the Go type, travels on the wire, so a type may be renamed or moved
// between packages as long as its registered name stays. Types implementing
// proto.Message are encoded with protobuf; every other type with
// encoding/json. A few basic types are registered by the package itself
// under their Go names: string, []byte, bool, int, int64, uint64, float64,
// and Ref under "actor.Ref".

type typeCodec struct {
	name      string
	typ       reflect.Type
	marshal   func(b []byte, v any) ([]byte, error)
	unmarshal func(data []byte) (any, error)
}

var codecs struct {
	mu     sync.Mutex // serializes registrations
	byName sync.Map   // string -> *typeCodec
	byType sync.Map   // reflect.Type -> *typeCodec
}

// RegisterType registers T under name for messages and replies that cross
// nodes. Register every type a node sends or receives, under the same name
// on every node, before the node exchanges messages (in init, or before
// starting the node). Registering the same type under the same name again
// does nothing; a name held by another type, or a type already registered
// under another name, fails with ErrTypeConflict; an invalid name (empty,
// over MaxNameLen bytes, control characters) fails with ErrInvalidName.
//
// If T implements proto.Message (a pointer to a generated message), values
// are encoded with protobuf; otherwise with encoding/json, so T's exported
// fields (or its json.Marshaler) define what travels and interface-typed
// fields come back as JSON's generic types.
//
// Registered already, by this package, under their Go names: string,
// []byte, bool, int, int64, uint64 and float64, and Ref as "actor.Ref".
// Registering one of them under another name fails with ErrTypeConflict.
func RegisterType[T any](name string) error {
	typ := reflect.TypeFor[T]()
	c := &typeCodec{name: name, typ: typ}
	if typ.Implements(reflect.TypeFor[proto.Message]()) {
		var zero T
		mt := any(zero).(proto.Message).ProtoReflect().Type()
		c.marshal = func(b []byte, v any) ([]byte, error) {
			return proto.MarshalOptions{}.MarshalAppend(b, v.(proto.Message))
		}
		c.unmarshal = func(data []byte) (any, error) {
			m := mt.New().Interface()
			if err := proto.Unmarshal(data, m); err != nil {
				return nil, err
			}
			return m, nil
		}
	} else {
		if err := jsonCarries(typ, map[reflect.Type]bool{}); err != nil {
			return fmt.Errorf("%w: register type %v as %q: %w", ErrInvalidOption, typ, name, err)
		}
		c.marshal = func(b []byte, v any) ([]byte, error) {
			out, err := json.Marshal(v)
			if err != nil {
				return b, err
			}
			return append(b, out...), nil
		}
		c.unmarshal = func(data []byte) (any, error) {
			p := new(T)
			if err := json.Unmarshal(data, p); err != nil {
				return nil, err
			}
			return *p, nil
		}
	}
	return registerCodec(c)
}

// jsonCarries says why JSON cannot carry a value of typ, if it cannot: a
// channel, a function, a complex number or an unsafe pointer (json.Marshal
// refuses them), a generated protobuf message by value (it travels as a
// pointer), or a struct whose fields are all unexported (it would arrive
// empty, silently). A type with its own JSON or text marshalling is taken
// at its word.
func jsonCarries(typ reflect.Type, seen map[reflect.Type]bool) error {
	if seen[typ] {
		return nil
	}
	seen[typ] = true
	for _, m := range []reflect.Type{reflect.TypeFor[json.Marshaler](), reflect.TypeFor[encoding.TextMarshaler]()} {
		if typ.Implements(m) || reflect.PointerTo(typ).Implements(m) {
			return nil
		}
	}
	switch typ.Kind() {
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("JSON cannot encode a %v", typ.Kind())
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		if typ.Kind() == reflect.Pointer && typ.Implements(reflect.TypeFor[proto.Message]()) {
			return nil
		}
		return jsonCarries(typ.Elem(), seen)
	case reflect.Struct:
		if reflect.PointerTo(typ).Implements(reflect.TypeFor[proto.Message]()) {
			return fmt.Errorf("a protobuf message travels as a pointer: register *%v", typ)
		}
		carried := typ.NumField() == 0
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() && !f.Anonymous || f.Tag.Get("json") == "-" {
				continue
			}
			if err := jsonCarries(f.Type, seen); err != nil {
				if f.IsExported() {
					return fmt.Errorf("field %s: %w", f.Name, err)
				}
				continue
			}
			carried = true
		}
		if !carried {
			return fmt.Errorf("%v has no exported field: JSON would carry nothing of it (export its fields, or implement json.Marshaler)", typ)
		}
	}
	return nil
}

// MustRegisterType is RegisterType for package initialisation: it panics
// when RegisterType fails, which only a programming error (a name clash or
// an invalid name) can cause.
func MustRegisterType[T any](name string) {
	if err := RegisterType[T](name); err != nil {
		panic(err)
	}
}

func registerCodec(c *typeCodec) error {
	if err := ValidateName(c.name); err != nil {
		return fmt.Errorf("actor: register type %v: %w", c.typ, err)
	}
	if c.typ.Kind() == reflect.Interface {
		return fmt.Errorf("%w: %v is an interface type; register the concrete types that travel", ErrInvalidOption, c.typ)
	}
	codecs.mu.Lock()
	defer codecs.mu.Unlock()
	if v, ok := codecs.byName.Load(c.name); ok {
		old := v.(*typeCodec)
		if old.typ == c.typ {
			return nil
		}
		return fmt.Errorf("%w: name %q is held by %v, cannot register %v", ErrTypeConflict, c.name, old.typ, c.typ)
	}
	if v, ok := codecs.byType.Load(c.typ); ok {
		return fmt.Errorf("%w: %v is already registered as %q, cannot register it as %q",
			ErrTypeConflict, c.typ, v.(*typeCodec).name, c.name)
	}
	codecs.byName.Store(c.name, c)
	codecs.byType.Store(c.typ, c)
	return nil
}

// MessageTypeName returns the name msg's type is registered under. The nil
// message has the empty name. An unregistered type fails with
// ErrUnregisteredType.
func MessageTypeName(msg any) (string, error) {
	if msg == nil {
		return "", nil
	}
	v, ok := codecs.byType.Load(reflect.TypeOf(msg))
	if !ok {
		return "", unregistered(msg)
	}
	return v.(*typeCodec).name, nil
}

func unregistered(msg any) error {
	return fmt.Errorf("%w: %T cannot be sent to another node; register it on every node with actor.RegisterType[%T](\"<name>\")",
		ErrUnregisteredType, msg, msg)
}

// EncodeMessage appends the encoding of msg to b and returns the name of
// its type and the extended buffer. A nil msg encodes to nothing under the
// empty name. It fails with ErrUnregisteredType for a type that is not
// registered, and with ErrCodec when the type's encoder fails; b is then
// returned unchanged.
func EncodeMessage(b []byte, msg any) (name string, out []byte, err error) {
	if msg == nil {
		return "", b, nil
	}
	v, ok := codecs.byType.Load(reflect.TypeOf(msg))
	if !ok {
		return "", b, unregistered(msg)
	}
	c := v.(*typeCodec)
	out, err = c.marshal(b, msg)
	if err != nil {
		return "", b[:len(b):len(b)], fmt.Errorf("%w: encode %T as %q: %w", ErrCodec, msg, c.name, err)
	}
	return c.name, out, nil
}

// DecodeMessage decodes data as a message of the type registered under
// name; the empty name gives nil. It fails with ErrUnknownType for a name
// this process has not registered, and with ErrCodec when the bytes do not
// decode. The result does not share memory with data.
func DecodeMessage(name string, data []byte) (any, error) {
	if name == "" {
		return nil, nil
	}
	v, ok := codecs.byName.Load(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q; register the type with actor.RegisterType on every node", ErrUnknownType, name)
	}
	c := v.(*typeCodec)
	m, err := c.unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: decode %q as %v: %w", ErrCodec, name, c.typ, err)
	}
	return m, nil
}

func registerBasic[T any](name string, marshal func(b []byte, v T) []byte, unmarshal func(data []byte) (T, error)) {
	err := registerCodec(&typeCodec{
		name: name,
		typ:  reflect.TypeFor[T](),
		marshal: func(b []byte, v any) ([]byte, error) {
			return marshal(b, v.(T)), nil
		},
		unmarshal: func(data []byte) (any, error) {
			v, err := unmarshal(data)
			if err != nil {
				return nil, err
			}
			return v, nil
		},
	})
	if err != nil {
		panic(err)
	}
}

var errBadVarint = errors.New("malformed varint")

func uvarint(data []byte) (uint64, error) {
	v, n := binary.Uvarint(data)
	if n <= 0 || n != len(data) {
		return 0, errBadVarint
	}
	return v, nil
}

func init() {
	registerBasic("string",
		func(b []byte, v string) []byte { return append(b, v...) },
		func(d []byte) (string, error) { return string(d), nil })
	registerBasic("[]byte",
		func(b []byte, v []byte) []byte { return append(b, v...) },
		func(d []byte) ([]byte, error) { return append([]byte{}, d...), nil })
	registerBasic("bool",
		func(b []byte, v bool) []byte {
			if v {
				return append(b, 1)
			}
			return append(b, 0)
		},
		func(d []byte) (bool, error) {
			if len(d) != 1 || d[0] > 1 {
				return false, errors.New("malformed bool")
			}
			return d[0] == 1, nil
		})
	registerBasic("int",
		func(b []byte, v int) []byte { return binary.AppendVarint(b, int64(v)) },
		func(d []byte) (int, error) {
			v, n := binary.Varint(d)
			if n <= 0 || n != len(d) || int64(int(v)) != v {
				return 0, errBadVarint
			}
			return int(v), nil
		})
	registerBasic("int64",
		func(b []byte, v int64) []byte { return binary.AppendVarint(b, v) },
		func(d []byte) (int64, error) {
			v, n := binary.Varint(d)
			if n <= 0 || n != len(d) {
				return 0, errBadVarint
			}
			return v, nil
		})
	registerBasic("uint64",
		func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) },
		uvarint)
	registerBasic("float64",
		func(b []byte, v float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) },
		func(d []byte) (float64, error) {
			if len(d) != 8 {
				return 0, errors.New("malformed float64")
			}
			return math.Float64frombits(binary.LittleEndian.Uint64(d)), nil
		})
	MustRegisterType[Ref]("actor.Ref")
	for _, s := range wellKnown {
		errorCodes.Store(s.code, s.err)
	}
}

// WireError is an error as it travels between nodes: the error's message,
// and a code naming the sentinel it wraps so that errors.Is still holds on
// the other side. An *ExitError travels with its Ref and its reason.
type WireError struct {
	// Code names the sentinel (see RegisterError); empty for other errors.
	Code string
	// Message is err.Error() on the node that returned it.
	Message string
	// Exit is set for an *ExitError: the Ref of the actor that exited.
	Exit Ref
	// Reason is the exit reason of an *ExitError.
	Reason *WireError
}

// RemoteError is an error returned by a handler on another node. Error
// gives the original message; errors.Is holds for the sentinel it wrapped
// when that sentinel is one of the package's or was registered on this node
// with RegisterError under the same code.
type RemoteError struct {
	Code    string
	Message string
	err     error
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinel the remote error wrapped, or nil.
func (e *RemoteError) Unwrap() error { return e.err }

var wellKnown = []struct {
	code string
	err  error
}{
	{"not_found", ErrNotFound},
	{"unhandled", ErrUnhandled},
	{"mailbox_full", ErrMailboxFull},
	{"system_stopped", ErrSystemStopped},
	{"invalid_name", ErrInvalidName},
	{"already_registered", ErrAlreadyRegistered},
	{"invalid_ref", ErrInvalidRef},
	{"reply_type", ErrReplyType},
	{"remote_node", ErrRemoteNode},
	{"invalid_option", ErrInvalidOption},
	{"unregistered_type", ErrUnregisteredType},
	{"unknown_type", ErrUnknownType},
	{"codec", ErrCodec},
	{"node_down", ErrNodeDown},
	{"message_too_large", ErrMessageTooLarge},
	{"backpressure", ErrBackpressure},
	{"killed", ErrKilled},
	{"normal", Normal},
	{"ignore", Ignore},
	{"shutdown", Shutdown},
	{"deadline_exceeded", context.DeadlineExceeded},
	{"canceled", context.Canceled},
}

var errorCodes struct {
	mu   sync.Mutex
	list []struct {
		code string
		err  error
	} // user sentinels, in registration order
	sync.Map // code -> error
}

// RegisterError makes sentinel travel between nodes by identity: an error
// wrapping it, returned by a handler on one node, satisfies
// errors.Is(err, sentinel) on the caller's node when both registered it
// under the same code. Register on every node, before use. A code already
// used by another error fails with ErrTypeConflict.
func RegisterError(code string, sentinel error) error {
	if err := ValidateName(code); err != nil {
		return fmt.Errorf("actor: register error: %w", err)
	}
	if sentinel == nil {
		return fmt.Errorf("%w: nil sentinel for code %q", ErrInvalidOption, code)
	}
	errorCodes.mu.Lock()
	defer errorCodes.mu.Unlock()
	if old, ok := errorCodes.Load(code); ok {
		if old == sentinel {
			return nil
		}
		return fmt.Errorf("%w: error code %q is held by %q", ErrTypeConflict, code, old)
	}
	errorCodes.list = append(errorCodes.list, struct {
		code string
		err  error
	}{code, sentinel})
	errorCodes.Store(code, sentinel)
	return nil
}

// ErrorToWire converts err for the wire; nil gives nil.
func ErrorToWire(err error) *WireError {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return &WireError{Code: "exit", Message: err.Error(), Exit: ee.Ref, Reason: ErrorToWire(ee.Reason)}
	}
	w := &WireError{Message: err.Error()}
	if re := (*RemoteError)(nil); errors.As(err, &re) && re.Code != "" {
		w.Code = re.Code
		return w
	}
	for _, s := range wellKnown {
		if errors.Is(err, s.err) {
			w.Code = s.code
			return w
		}
	}
	errorCodes.mu.Lock()
	defer errorCodes.mu.Unlock()
	for _, s := range errorCodes.list {
		if errors.Is(err, s.err) {
			w.Code = s.code
			break
		}
	}
	return w
}

// ErrorFromWire rebuilds an error from its wire form: an *ExitError for an
// exit, a *RemoteError otherwise; nil gives nil.
func ErrorFromWire(w *WireError) error {
	if w == nil {
		return nil
	}
	if w.Code == "exit" {
		reason := ErrorFromWire(w.Reason)
		if reason == nil {
			reason = &RemoteError{Message: w.Message}
		}
		return &ExitError{Ref: w.Exit, Reason: reason}
	}
	re := &RemoteError{Code: w.Code, Message: w.Message}
	if w.Code != "" {
		if s, ok := errorCodes.Load(w.Code); ok {
			re.err = s.(error)
		}
	}
	return re
}
