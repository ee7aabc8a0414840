package agent

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics, on its own registry.
type metrics struct {
	reg         *prometheus.Registry
	jobs        *prometheus.CounterVec
	hooks       *prometheus.CounterVec
	running     prometheus.Gauge
	pollErrors  prometheus.Counter
	leaseLost   prometheus.Counter
	interrupted prometheus.Counter
	lastSuccess prometheus.Gauge
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeboat_agent_jobs_total",
			Help: "Jobs finished by this agent, by result (succeeded, failed, lease_lost)."}, []string{"result"}),
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeboat_agent_hooks_total",
			Help: "Hooks run, by hook (pre, post) and result."}, []string{"hook", "result"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lifeboat_agent_running_jobs", Help: "Jobs running now."}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "lifeboat_agent_coordinator_errors_total",
			Help: "Failed attempts to reach the coordinator (polls, enrollment, reports)."}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "lifeboat_agent_lease_lost_total",
			Help: "Jobs aborted without committing because their lease was lost."}),
		interrupted: prometheus.NewCounter(prometheus.CounterOpts{Name: "lifeboat_agent_interrupted_reported_total",
			Help: "Jobs of a previous process reported as interrupted at start."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lifeboat_agent_last_success_timestamp_seconds",
			Help: "When a job last succeeded (Unix time)."}),
	}
	m.reg.MustRegister(m.jobs, m.hooks, m.running, m.pollErrors, m.leaseLost, m.interrupted, m.lastSuccess,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lifeboat_agent_job_bytes",
			Help: "Bytes processed so far by the running jobs."}, func() float64 {
			var n int64
			a.mu.Lock()
			for _, j := range a.running {
				n += max(j.prog.BytesProcessed.Load(), j.prog.BytesRead.Load())
			}
			a.mu.Unlock()
			return float64(n)
		}),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Health is what /healthz reports.
type Health struct {
	Status      string    `json:"status"` // ok, or disconnected
	Agent       string    `json:"agent"`
	LastContact time.Time `json:"last_contact,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Running     []string  `json:"running"`
}

// Health reports the agent's state. It is "disconnected" when the
// coordinator has not answered for longer than three poll waits.
func (a *Agent) Health() Health {
	a.mu.Lock()
	h := Health{Status: "ok", Agent: a.cfg.Name, LastContact: a.lastContact, LastError: a.lastErr}
	a.mu.Unlock()
	h.Running = a.runningIDs()
	slices.Sort(h.Running)
	if h.LastContact.IsZero() || a.clock.Now().Sub(h.LastContact) > 3*a.cfg.PollWait {
		h.Status = "disconnected"
	}
	return h
}

// Handler serves /metrics and /healthz (for --listen). /healthz answers
// 200 while the agent is in touch with the coordinator, 503 otherwise.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := a.Health()
		code := http.StatusOK
		if h.Status != "ok" {
			code = http.StatusServiceUnavailable
		}
		b, _ := json.Marshal(h)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(append(b, '\n'))
	})
	return mux
}
