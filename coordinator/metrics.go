package coordinator

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is a node's Prometheus registry: request and apply latencies
// measured as they happen, and gauges derived from Raft and the replicated
// state at scrape time (every node reports its own view).
type Metrics struct {
	reg      *prometheus.Registry
	apply    *prometheus.HistogramVec
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	leased   prometheus.Counter
}

func newMetrics(a *API) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lifeboat_apply_duration_seconds",
			Help:    "Time from proposing an API write to its result (Raft commit and FSM apply), by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lifeboat_http_requests_total",
			Help: "API requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lifeboat_http_request_duration_seconds",
			Help:    "API request latency by route (long polls included).",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		leased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lifeboat_jobs_leased_total",
			Help: "Jobs leased to agents through this node.",
		}),
	}
	m.reg.MustRegister(m.apply, m.requests, m.latency, m.leased, &stateCollector{a: a}, &maintenanceCollector{a: a}, &deliveryCollector{n: a.node},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) observeApply(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.apply.WithLabelValues(result).Observe(d.Seconds())
}

func (m *Metrics) observeRequest(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

var (
	descRaftState   = prometheus.NewDesc("lifeboat_raft_state", "1 for this node's current Raft state.", []string{"state"}, nil)
	descRaftLeader  = prometheus.NewDesc("lifeboat_raft_leader", "1 if this node is the leader.", nil, nil)
	descRaftTerm    = prometheus.NewDesc("lifeboat_raft_term", "Current Raft term.", nil, nil)
	descRaftCommit  = prometheus.NewDesc("lifeboat_raft_commit_index", "Raft commit index known to this node.", nil, nil)
	descRaftApplied = prometheus.NewDesc("lifeboat_raft_applied_index", "Raft index this node's state machine has applied.", nil, nil)
	descRaftMembers = prometheus.NewDesc("lifeboat_raft_members", "Servers in the cluster configuration.", nil, nil)
	descHasLeader   = prometheus.NewDesc("lifeboat_raft_has_leader", "1 if this node knows a leader.", nil, nil)
	descJobs        = prometheus.NewDesc("lifeboat_jobs", "Jobs by state.", []string{"state"}, nil)
	descLag         = prometheus.NewDesc("lifeboat_schedule_lag_seconds", "How long a policy's next scheduled instant is overdue (0 when the scheduler keeps up).", []string{"policy"}, nil)
	descAgents      = prometheus.NewDesc("lifeboat_agents_connected", "Agents seen within the agent timeout.", nil, nil)
	descAgentsAll   = prometheus.NewDesc("lifeboat_agents", "Enrolled agents (revoked included).", nil, nil)
	descPolls       = prometheus.NewDesc("lifeboat_agent_long_polls", "Agent long polls waiting on this node.", nil, nil)
	descRPO         = prometheus.NewDesc("lifeboat_policy_rpo_seconds", "Achieved recovery point: age of the policy's newest good snapshot.", []string{"policy"}, nil)
	descRPOTarget   = prometheus.NewDesc("lifeboat_policy_rpo_target_seconds", "The policy's RPO target (0: none).", []string{"policy"}, nil)
	descOverdue     = prometheus.NewDesc("lifeboat_policy_overdue", "1 if the policy misses its RPO target.", []string{"policy"}, nil)
	descSnapshots   = prometheus.NewDesc("lifeboat_catalog_snapshots", "Snapshots in the catalog.", nil, nil)
	descAlerts      = prometheus.NewDesc("lifeboat_alerts_open", "Open alerts by kind.", []string{"kind"}, nil)
	raftStates      = []string{"Leader", "Follower", "Candidate", "Shutdown"}
	descDeliveries  = prometheus.NewDesc("lifeboat_alert_deliveries_total",
		"Alert messages this node posted (as leader), by target and result (delivered: a 2xx answer; failed: an error or any other answer, retried later).",
		[]string{"target", "result"}, nil)
)

// deliveryCollector reports the node's alert delivery counts.
type deliveryCollector struct{ n *Node }

func (c *deliveryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDeliveries }

func (c *deliveryCollector) Collect(ch chan<- prometheus.Metric) {
	c.n.deliveries.each(func(target string, delivered, failed uint64) {
		ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.CounterValue, float64(delivered), target, "delivered")
		ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.CounterValue, float64(failed), target, "failed")
	})
}

// stateCollector reads Raft and the replicated state at scrape time.
type stateCollector struct{ a *API }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftLeader, descRaftTerm, descRaftCommit, descRaftApplied,
		descRaftMembers, descHasLeader, descJobs, descLag, descAgents, descAgentsAll, descPolls, descRPO, descRPOTarget, descOverdue, descSnapshots, descAlerts} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := a.node.Status()
	for _, s := range raftStates {
		gauge(descRaftState, b2f(st.State == s), s)
	}
	gauge(descRaftLeader, b2f(st.State == "Leader"))
	gauge(descHasLeader, b2f(st.Leader != ""))
	gauge(descRaftTerm, float64(st.Term))
	gauge(descRaftCommit, float64(st.CommitIndex))
	gauge(descRaftApplied, float64(st.AppliedIndex))
	gauge(descRaftMembers, float64(len(st.Members)))
	gauge(descPolls, float64(a.waiting.Load()))

	now := a.clock.Now().UTC()
	var rep StatusReport
	jobs := map[JobState]int{JobPending: 0, JobRunning: 0, JobSucceeded: 0, JobFailed: 0, JobCancelled: 0}
	var snaps, agents int
	alerts := map[AlertKind]int{}
	a.node.View(func(s *State) {
		rep = computeStatus(s, now, a.node.cfg.AgentTimeout)
		for _, j := range s.Jobs {
			jobs[j.State]++
		}
		snaps, agents = len(s.Catalog), len(s.Agents)
		for _, al := range s.Alerts {
			if al.Firing() {
				alerts[al.Kind]++
			}
		}
	})
	for _, k := range AlertKinds {
		gauge(descAlerts, float64(alerts[k]), string(k))
	}
	for _, st := range []JobState{JobPending, JobRunning, JobSucceeded, JobFailed, JobCancelled} {
		gauge(descJobs, float64(jobs[st]), string(st))
	}
	connected := 0
	for _, ag := range rep.Agents {
		if ag.Connected {
			connected++
		}
	}
	gauge(descAgents, float64(connected))
	gauge(descAgentsAll, float64(agents))
	gauge(descSnapshots, float64(snaps))
	for _, p := range rep.Policies {
		gauge(descLag, time.Duration(p.ScheduleLag).Seconds(), p.Name)
		gauge(descRPO, time.Duration(p.RPOAchieved).Seconds(), p.Name)
		gauge(descRPOTarget, time.Duration(p.RPOTarget).Seconds(), p.Name)
		gauge(descOverdue, b2f(p.Overdue), p.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
