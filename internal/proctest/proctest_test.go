package proctest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/proctest"
)

// envChild makes the test binary act as a child process (see TestMain):
// "serve" says a line, then that it is ready, then echoes its input and
// says "bye" once it closes; "exit" exits at once; "mute" never says it
// is ready; "deaf" says it is ready and ignores its input closing.
const envChild = "PROCTEST_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "serve":
		fmt.Println("hello")
		fmt.Println("ready at once")
		b, _ := io.ReadAll(os.Stdin)
		fmt.Print(string(b))
		fmt.Println("bye")
	case "exit":
		fmt.Fprintln(os.Stderr, "no luck")
		os.Exit(3)
	case "mute":
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "deaf":
		fmt.Println("ready")
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

func child(mode string) proctest.Spec {
	s := proctest.TestBinary("child "+mode, envChild+"="+mode)
	s.ReadyWithin = 30 * time.Second
	return s
}

func TestStartWaitsForReadyAndStopEndsTheProcess(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	s := child("serve")
	s.OnLine = func(line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}
	p, err := proctest.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Fatal("process not alive after Start")
	}
	if err := p.Tell("echoed"); err != nil {
		t.Fatal(err)
	}
	if !p.Stop(30 * time.Second) {
		t.Fatal("Stop killed a process that ends when its input closes")
	}
	if p.Alive() {
		t.Fatal("process alive after Stop")
	}
	if err := p.Err(); err != nil {
		t.Fatalf("Err = %v for a process that exited with status 0", err)
	}
	if err := p.Tell("late"); err == nil {
		t.Fatal("Tell after Stop succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"hello", "echoed", "bye"}; !slices.Equal(lines, want) {
		t.Fatalf("lines = %q, want %q", lines, want)
	}
}

func TestStartFailsWhenTheProcessExitsFirst(t *testing.T) {
	_, err := proctest.Start(child("exit"))
	if err == nil || !strings.Contains(err.Error(), "child exit exited before it was ready: exit status 3") {
		t.Fatalf("Start = %v", err)
	}
}

func TestStartKillsAProcessNotReadyInTime(t *testing.T) {
	s := child("mute")
	s.ReadyWithin = 200 * time.Millisecond
	_, err := proctest.Start(s)
	if err == nil || err.Error() != "child mute not ready within 200ms" {
		t.Fatalf("Start = %v", err)
	}
}

func TestStopKillsAProcessThatDoesNotEnd(t *testing.T) {
	s := child("deaf")
	s.Group = true
	p, err := proctest.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stop(100 * time.Millisecond) {
		t.Fatal("Stop reports that a process which ignores its input ended on its own")
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done open after Stop")
	}
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Err = %v for a killed process", err)
	}
	p.Kill() // does nothing now
}

type tick struct{}

// ticks passes on every tick it gets.
type ticks chan tick

func (c ticks) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

func (c ticks) HandleInfo(_ *actor.Context, msg any) error {
	if tk, ok := msg.(tick); ok {
		select {
		case c <- tk:
		default:
		}
	}
	return nil
}

func TestEverySendsUntilStopped(t *testing.T) {
	sys := actor.NewSystem(actor.Config{Node: "test"})
	defer sys.Shutdown(context.Background())
	got := make(ticks, 100)
	ref, err := sys.Spawn(context.Background(), got, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := proctest.Every(sys, ref, time.Millisecond, tick{})
	for range 3 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no tick within 10s")
		}
	}
	stop()
	stop() // does nothing
}
