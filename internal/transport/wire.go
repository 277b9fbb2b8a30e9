package transport

import (
	"fmt"

	"github.com/cohort-go/cohort/actor"
	"google.golang.org/protobuf/encoding/protowire"
)

// The wire format, written with protowire rather than generated code
// (protoc is not part of the build): a gRPC message is a frame, and a frame
// is the protobuf message
//
//	message Frame { repeated Envelope envelopes = 1; }
//	message Envelope {
//	  uint32 kind = 1;        // see kind
//	  uint64 id = 2;          // correlation id of a call/reply, id of a monitor,
//	                          // last call read (drained)
//	  uint64 ref_id = 3;      // target actor on the receiving node ...
//	  uint64 ref_inc = 4;     // ... and its incarnation
//	  string name = 5;        // or a name in the receiving node's local table
//	  int64 deadline_ns = 6;  // remaining time of a call, 0 if none
//	  string type = 7;        // registered name of the payload's type
//	  bytes payload = 8;
//	  WireError error = 9;    // reply error, down reason or stop reason
//	}
//	message WireError {
//	  string code = 1; string message = 2;
//	  string exit_node = 3; uint64 exit_id = 4; uint64 exit_inc = 5;
//	  WireError reason = 6;
//	}
//
// so a captured frame decodes with `protoc --decode_raw`, and a node skips
// fields it does not know. The sender node and the cluster prefix are not
// repeated in every envelope: they travel once per stream, in its metadata,
// and the receiver refuses the whole stream if they do not match.

type kind uint8

const (
	kindCall kind = iota + 1
	kindCast
	kindSend
	kindReply
	kindMonitor
	kindDemonitor
	kindDown
	// kindDrained ends the envelopes of an inbound stream whose node is
	// leaving: id is the highest call id the node read from the stream.
	// It answered every call it read; it read none after id.
	kindDrained
	// kindCastTaken and kindSendTaken are a cast and a send answered,
	// like a call, with a reply: once the actor has taken the message
	// (actor.System.CastTaken, SendTaken).
	kindCastTaken
	kindSendTaken
	// kindStop stops the target with the reason in error, answered like a
	// call once the actor has exited (actor.System.Stop); kindKill kills
	// it (actor.System.Kill), unanswered.
	kindStop
	kindKill
	kindLast = kindKill
)

func (k kind) String() string {
	switch k {
	case kindCall:
		return "call"
	case kindCast:
		return "cast"
	case kindSend:
		return "send"
	case kindReply:
		return "reply"
	case kindMonitor:
		return "monitor"
	case kindDemonitor:
		return "demonitor"
	case kindDown:
		return "down"
	case kindDrained:
		return "drained"
	case kindCastTaken:
		return "cast-taken"
	case kindSendTaken:
		return "send-taken"
	case kindStop:
		return "stop"
	case kindKill:
		return "kill"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

const (
	fEnvelope = 1

	fKind     = 1
	fID       = 2
	fRefID    = 3
	fRefInc   = 4
	fName     = 5
	fDeadline = 6
	fType     = 7
	fPayload  = 8
	fError    = 9

	fErrCode    = 1
	fErrMessage = 2
	fErrNode    = 3
	fErrID      = 4
	fErrInc     = 5
	fErrReason  = 6
)

// envelope is one decoded envelope. payload aliases the frame it came from.
type envelope struct {
	kind     kind
	id       uint64
	ref      actor.Ref // Node left empty: it is the receiving node
	name     string
	deadline int64
	typ      string
	payload  []byte
	err      *actor.WireError
}

// appendEnvelope appends e, as field 1 of a frame, to b.
func appendEnvelope(b []byte, e *envelope) []byte {
	n := envelopeSize(e)
	b = protowire.AppendTag(b, fEnvelope, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendVarintField(b, fKind, uint64(e.kind))
	b = appendVarintField(b, fID, e.id)
	b = appendVarintField(b, fRefID, e.ref.ID)
	b = appendVarintField(b, fRefInc, e.ref.Incarnation)
	b = appendStringField(b, fName, e.name)
	b = appendVarintField(b, fDeadline, uint64(e.deadline))
	b = appendStringField(b, fType, e.typ)
	if len(e.payload) > 0 {
		b = protowire.AppendTag(b, fPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, e.payload)
	}
	if e.err != nil {
		b = protowire.AppendTag(b, fError, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(errorSize(e.err)))
		b = appendError(b, e.err)
	}
	return b
}

func envelopeSize(e *envelope) int {
	n := varintFieldSize(fKind, uint64(e.kind)) + varintFieldSize(fID, e.id) +
		varintFieldSize(fRefID, e.ref.ID) + varintFieldSize(fRefInc, e.ref.Incarnation) +
		stringFieldSize(e.name) + varintFieldSize(fDeadline, uint64(e.deadline)) + stringFieldSize(e.typ)
	if len(e.payload) > 0 {
		n += 1 + protowire.SizeBytes(len(e.payload))
	}
	if e.err != nil {
		n += 1 + protowire.SizeBytes(errorSize(e.err))
	}
	return n
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func varintFieldSize(_ protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func stringFieldSize(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func appendError(b []byte, w *actor.WireError) []byte {
	b = appendStringField(b, fErrCode, w.Code)
	b = appendStringField(b, fErrMessage, w.Message)
	b = appendStringField(b, fErrNode, w.Exit.Node)
	b = appendVarintField(b, fErrID, w.Exit.ID)
	b = appendVarintField(b, fErrInc, w.Exit.Incarnation)
	if w.Reason != nil {
		b = protowire.AppendTag(b, fErrReason, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(errorSize(w.Reason)))
		b = appendError(b, w.Reason)
	}
	return b
}

func errorSize(w *actor.WireError) int {
	n := stringFieldSize(w.Code) + stringFieldSize(w.Message) + stringFieldSize(w.Exit.Node) +
		varintFieldSize(fErrID, w.Exit.ID) + varintFieldSize(fErrInc, w.Exit.Incarnation)
	if w.Reason != nil {
		n += 1 + protowire.SizeBytes(errorSize(w.Reason))
	}
	return n
}

// maxErrorDepth bounds the nesting of exit reasons a peer may send.
const maxErrorDepth = 16

// nextEnvelope decodes the first envelope of frame into e and returns the
// rest; ok is false when frame holds no further envelope. It fails, without
// panicking, on any malformed input.
func nextEnvelope(frame []byte, e *envelope) (rest []byte, ok bool, err error) {
	for len(frame) > 0 {
		num, typ, n := protowire.ConsumeTag(frame)
		if n < 0 {
			return nil, false, fmt.Errorf("%w: frame: %w", ErrMalformed, protowire.ParseError(n))
		}
		if num == fEnvelope && typ == protowire.BytesType {
			body, m := protowire.ConsumeBytes(frame[n:])
			if m < 0 {
				return nil, false, fmt.Errorf("%w: envelope: %w", ErrMalformed, protowire.ParseError(m))
			}
			*e = envelope{}
			if err := decodeEnvelope(body, e); err != nil {
				return nil, false, err
			}
			return frame[n+m:], true, nil
		}
		m := protowire.ConsumeFieldValue(num, typ, frame[n:])
		if m < 0 {
			return nil, false, fmt.Errorf("%w: frame: %w", ErrMalformed, protowire.ParseError(m))
		}
		frame = frame[n+m:]
	}
	return nil, false, nil
}

func decodeEnvelope(b []byte, e *envelope) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: envelope: %w", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && num <= fDeadline && num != fName:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return fmt.Errorf("%w: envelope field %d: %w", ErrMalformed, num, protowire.ParseError(m))
			}
			b = b[m:]
			switch num {
			case fKind:
				if v == 0 || v > uint64(kindLast) {
					return fmt.Errorf("%w: unknown envelope kind %d", ErrMalformed, v)
				}
				e.kind = kind(v)
			case fID:
				e.id = v
			case fRefID:
				e.ref.ID = v
			case fRefInc:
				e.ref.Incarnation = v
			case fDeadline:
				e.deadline = int64(v)
			}
		case typ == protowire.BytesType && (num == fName || num == fType || num == fPayload || num == fError):
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("%w: envelope field %d: %w", ErrMalformed, num, protowire.ParseError(m))
			}
			b = b[m:]
			switch num {
			case fName:
				e.name = string(v)
			case fType:
				e.typ = string(v)
			case fPayload:
				e.payload = v
			case fError:
				w, err := decodeError(v, 0)
				if err != nil {
					return err
				}
				e.err = w
			}
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("%w: envelope field %d: %w", ErrMalformed, num, protowire.ParseError(m))
			}
			b = b[m:]
		}
	}
	if e.kind == 0 {
		return fmt.Errorf("%w: envelope without kind", ErrMalformed)
	}
	return nil
}

func decodeError(b []byte, depth int) (*actor.WireError, error) {
	if depth > maxErrorDepth {
		return nil, fmt.Errorf("%w: error reasons nested deeper than %d", ErrMalformed, maxErrorDepth)
	}
	w := &actor.WireError{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: error: %w", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == fErrCode || num == fErrMessage || num == fErrNode || num == fErrReason):
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: error field %d: %w", ErrMalformed, num, protowire.ParseError(m))
			}
			b = b[m:]
			switch num {
			case fErrCode:
				w.Code = string(v)
			case fErrMessage:
				w.Message = string(v)
			case fErrNode:
				w.Exit.Node = string(v)
			case fErrReason:
				r, err := decodeError(v, depth+1)
				if err != nil {
					return nil, err
				}
				w.Reason = r
			}
		case typ == protowire.VarintType && (num == fErrID || num == fErrInc):
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: error field %d: %w", ErrMalformed, num, protowire.ParseError(m))
			}
			b = b[m:]
			if num == fErrID {
				w.Exit.ID = v
			} else {
				w.Exit.Incarnation = v
			}
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, fmt.Errorf("%w: error field %d: %w", ErrMalformed, num, protowire.ParseError(m))
			}
			b = b[m:]
		}
	}
	return w, nil
}
