package lease_test

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkFencingLead measures, per TTL, how long before etcd revokes a
// silent lease the session declares its epoch lost. Run it with
// -benchtime=Nx; each iteration pauses the connection for about one TTL.
func BenchmarkFencingLead(b *testing.B) {
	for _, ttl := range []time.Duration{2 * time.Second, 5 * time.Second} {
		b.Run(fmt.Sprintf("ttl=%v", ttl), func(b *testing.B) {
			cl := startEtcd(b)
			direct := cl.Client(b)
			var lead, fired time.Duration
			for i := 0; i < b.N; i++ {
				r := measureFencing(b, cl, direct, ttl)
				lead += r.leadToRevoke
				fired += r.fired
			}
			b.ReportMetric(float64(lead.Milliseconds())/float64(b.N), "lead-ms")
			b.ReportMetric(float64(fired.Milliseconds())/float64(b.N), "pause-to-signal-ms")
		})
	}
}
