package transport

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// BenchmarkGRPCStreamFloor is the floor under a remote call: a frame sent
// on a gRPC bidirectional stream to a second OS process (this test binary
// re-executed) that sends it straight back, with the transport's codec and
// service and window sizes, and nothing of cohort around it. One op is one round trip from
// one goroutine; the p50 here is what no call over a gRPC stream can beat
// on the machine. Compare with BenchmarkRemoteCall/sequential:
//
//	go test -run '^$' -bench GRPCStreamFloor -benchtime 20000x -count 3 ./internal/transport
func BenchmarkGRPCStreamFloor(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), echoServerEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("echo server: %v", err)
	}
	cc, err := grpc.NewClient(strings.TrimSpace(addr), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{})),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(4<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := cc.NewStream(ctx, &streamDesc, methodName)
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte{7}, 40) // about the size of a call's envelope
	var in inFrame
	roundTrip := func() {
		buf := bufPool.Get(len(msg))
		copy(*buf, msg)
		if err := st.SendMsg(&outFrame{buf: mem.NewBuffer(buf, bufPool)}); err != nil {
			b.Fatal(err)
		}
		if err := st.RecvMsg(&in); err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(in.b, msg) {
			b.Fatalf("echo %x, sent %x", in.b, msg)
		}
	}
	roundTrip() // the stream opens off the clock
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range lat {
		start := time.Now()
		roundTrip()
		lat[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

// echoServerEnv makes this test binary serve the echo stream of
// BenchmarkGRPCStreamFloor instead of running tests.
const echoServerEnv = "COHORT_TRANSPORT_ECHO_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(echoServerEnv) != "" {
		if err := serveEcho(); err != nil {
			fmt.Fprintln(os.Stderr, "echo server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveEcho prints its address and sends every frame back on its stream,
// until its parent closes its standard input or kills it.
func serveEcho() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.ForceServerCodecV2(frameCodec{}), grpc.InitialWindowSize(1<<20), grpc.InitialConnWindowSize(4<<20))
	s.RegisterService(serviceDesc(func(_ any, ss grpc.ServerStream) error {
		var f inFrame
		for {
			if err := ss.RecvMsg(&f); err != nil {
				return err
			}
			buf := bufPool.Get(len(f.b))
			copy(*buf, f.b)
			if err := ss.SendMsg(&outFrame{buf: mem.NewBuffer(buf, bufPool)}); err != nil {
				return err
			}
		}
	}), nil)
	fmt.Println(lis.Addr())
	return s.Serve(lis)
}
