package transport

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// The service is described by hand, as protoc would generate it: one
// bidirectional streaming method. Each message of the stream is one frame;
// the codec below passes frames through as raw bytes, so the only encoding
// work is the envelopes' own (see wire.go).

const (
	serviceName = "cohort.transport.v1.Transport"
	methodName  = "/" + serviceName + "/Stream"
)

var streamDesc = grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}

func serviceDesc(h grpc.StreamHandler) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Stream",
			Handler:       h,
			ServerStreams: true,
			ClientStreams: true,
		}},
		Metadata: "cohort/transport.proto",
	}
}

// outFrame is a frame to send: a buffer from grpc's pool, which grpc frees
// once the frame is written.
type outFrame struct{ buf mem.Buffer }

// inFrame receives a frame; its bytes are reused from one message to the
// next, so a frame must be consumed before the next RecvMsg.
type inFrame struct{ b []byte }

// frameCodec is the gRPC codec of the stream: raw frames, no copy on send.
type frameCodec struct{}

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*outFrame)
	if !ok {
		return nil, fmt.Errorf("transport: codec cannot marshal %T", v)
	}
	return mem.BufferSlice{f.buf}, nil
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*inFrame)
	if !ok {
		return fmt.Errorf("transport: codec cannot unmarshal into %T", v)
	}
	n := data.Len()
	if cap(f.b) < n {
		f.b = make([]byte, n, max(n, 2*cap(f.b)))
	}
	f.b = f.b[:n]
	data.CopyTo(f.b)
	return nil
}

func (frameCodec) Name() string { return "cohort-frame" }
