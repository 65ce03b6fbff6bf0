package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rujukan/rujukan/crypto"
)

// Metrics are the gateway's Prometheus metrics. One set may serve several
// gateways in one process (rujukan dev); the agency label tells them apart.
type Metrics struct {
	Registry *prometheus.Registry
	Requests *prometheus.CounterVec
	Latency  *prometheus.HistogramVec
	// AuthFailures counts requests refused for a missing or bad token.
	// They are counted, not audited: anyone who reaches the port can send
	// them, and the audit log must not be theirs to fill.
	AuthFailures    *prometheus.CounterVec
	envelopes       *prometheus.CounterVec
	handling        *prometheus.HistogramVec
	receipts        *prometheus.CounterVec
	outcomes        *prometheus.CounterVec
	queued          *prometheus.GaugeVec
	refused         *prometheus.CounterVec
	waiting         *prometheus.CounterVec
	publishFailures prometheus.Counter
	perMessage      prometheus.Histogram
	witnessAlarms   *prometheus.CounterVec
	limitHits       *prometheus.CounterVec
	attachmentBytes *prometheus.CounterVec
	agency          string
}

// NewMetrics registers the metrics in reg, or in a new registry with the Go
// and process collectors when reg is nil.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_http_requests_total", Help: "HTTP requests by agency, route and status code.",
		}, []string{"agency", "route", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rujukan_http_request_duration_seconds", Help: "HTTP request latency by agency and route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"agency", "route"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_auth_failures_total", Help: "Requests refused for a missing or invalid token, by agency and reason.",
		}, []string{"agency", "reason"}),
		envelopes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_envelopes_total", Help: "Envelopes by agency, direction, kind and result.",
		}, []string{"agency", "direction", "kind", "result"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rujukan_envelope_handling_seconds", Help: "Time to verify, open, store and ack an incoming envelope, by agency, kind and result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"agency", "kind", "result"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_receipts_received_total", Help: "Signed receipts received, by agency and event.",
		}, []string{"agency", "event"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_delivery_outcomes_total", Help: "Delivery outcomes of sent referrals (delivered or failed).",
		}, []string{"agency", "outcome"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rujukan_outbox_queued", Help: "Envelopes waiting in the outbox for a broker acknowledgement.",
		}, []string{"agency"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_envelopes_refused_total", Help: "Incoming envelopes refused, by agency, sender (as the broker authenticated it: an agency of the directory, or \"unknown\") and reason.",
		}, []string{"agency", "sender", "reason"}),
		waiting: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_envelopes_waiting_total", Help: "Incoming envelopes set aside to wait for another one, by agency and sender.",
		}, []string{"agency", "sender"}),
		witnessAlarms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_witness_alarms_total", Help: "Checkpoints of another agency's audit log that did not extend the last one seen (a fork or a rollback), by agency and log.",
		}, []string{"agency", "log"}),
		limitHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_broker_limit_hits_total",
			Help: "Publishes the broker refused because a limit was reached, by agency, recipient and limit; the envelopes stay queued.",
		}, []string{"agency", "to", "reason"}),
		attachmentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rujukan_attachment_bytes_total",
			Help: "Bytes of sealed files acknowledged by the broker (out) or written and fsynced here (in), by agency and direction.",
		}, []string{"agency", "direction"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rujukan_publish_failures_total", Help: "Failed publish attempts (retried).",
		}),
		perMessage: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rujukan_envelopes_per_message", Help: "Envelopes carried by each broker message published (more than one: a bundle).",
			Buckets: []float64{1, 2, 4, 8, 16},
		}),
	}
	reg.MustRegister(m.Requests, m.Latency, m.AuthFailures, m.envelopes, m.handling, m.receipts, m.outcomes, m.queued, m.refused, m.waiting, m.publishFailures, m.perMessage, m.witnessAlarms, m.limitHits, m.attachmentBytes)
	return m
}

func (g *Gateway) metricsAttachmentBytes(dir string, n int64) {
	g.metrics.attachmentBytes.WithLabelValues(g.self, dir).Add(float64(n))
}

func (g *Gateway) metricsEnvelope(dir, kind, result string) {
	g.metrics.envelopes.WithLabelValues(g.self, dir, kindLabel(kind), result).Inc()
}

// kindLabel keeps label values to the known kinds: the kind of a refused
// envelope comes from outside.
func kindLabel(kind string) string {
	if crypto.ValidKind(kind) {
		return kind
	}
	return "unknown"
}
