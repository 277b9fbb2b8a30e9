package embedetcd_test

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/internal/embedetcd"
)

func ExampleStart() {
	dir, _ := os.MkdirTemp("", "embedetcd-example")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := embedetcd.Start(ctx, embedetcd.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()
	_, _ = cli.Put(ctx, "greeting", "hello")
	resp, _ := cli.Get(ctx, "greeting")
	fmt.Println(string(resp.Kvs[0].Value))
	// Output: hello
}
