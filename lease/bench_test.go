package lease_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cohort-go/cohort/internal/etcdtest"
)

// BenchmarkFencingLead measures, per TTL, how long before etcd revokes a
// silent lease the session declares its epoch lost. Run it with
// -benchtime=Nx; each iteration pauses the connection for about one TTL.
func BenchmarkFencingLead(b *testing.B) {
	for _, ttl := range []time.Duration{2 * time.Second, 5 * time.Second} {
		b.Run(fmt.Sprintf("ttl=%v", ttl), func(b *testing.B) {
			cl := etcdtest.Start(b)
			direct := cl.Client(b)
			var lead, fired time.Duration
			minLead, maxLead := time.Duration(1<<62), time.Duration(0)
			for i := 0; i < b.N; i++ {
				r := measureFencing(b, cl, direct, ttl)
				lead += r.leadToRevoke
				fired += r.fired
				minLead, maxLead = min(minLead, r.leadToRevoke), max(maxLead, r.leadToRevoke)
			}
			b.ReportMetric(float64(lead.Milliseconds())/float64(b.N), "lead-ms")
			b.ReportMetric(float64(minLead.Milliseconds()), "min-lead-ms")
			b.ReportMetric(float64(maxLead.Milliseconds()), "max-lead-ms")
			b.ReportMetric(float64(fired.Milliseconds())/float64(b.N), "pause-to-signal-ms")
		})
	}
}
