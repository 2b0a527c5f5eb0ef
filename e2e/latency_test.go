package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// BenchmarkDetectionLatency measures, for 20 certificates from an unexpected
// issuer, the time from the add-chain call to the Sunlight log until
// Alertmanager delivers CTUnexpectedIssuerCertificate to the webhook.
// Settings: Sunlight sequences every 100 ms; the exporter polls the log's
// checkpoint every second; Prometheus scrapes and evaluates every second;
// Alertmanager group_wait is 1 s. Run: go test -run '^$' -bench DetectionLatency -benchtime 1x ./e2e
func BenchmarkDetectionLatency(b *testing.B) {
	for b.Loop() {
		w := newWorld(b, "1s", "{}")
		var latencies []time.Duration
		for i := 0; i < 20; i++ {
			start := time.Now()
			tbs, _ := w.submit(w.evil, testpki.Leaf{DNSNames: []string{fmt.Sprintf("n%d.example.com", i)}, SCTs: 2})
			var at time.Time
			testenv.Eventually(b, time.Minute, "the alert", func() bool {
				var ok bool
				_, at, ok = w.stack.hook.Firing(map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "tbs_sha256": tbs})
				return ok
			})
			latencies = append(latencies, at.Sub(start))
		}
		slices.Sort(latencies)
		median := latencies[len(latencies)/2]
		p95 := latencies[(len(latencies)*95+99)/100-1]
		b.ReportMetric(median.Seconds(), "median-s")
		b.ReportMetric(p95.Seconds(), "p95-s")
		b.ReportMetric(latencies[0].Seconds(), "min-s")
		b.ReportMetric(latencies[len(latencies)-1].Seconds(), "max-s")
	}
}
