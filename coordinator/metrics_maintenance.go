package coordinator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Drill and verification gauges, read from the replicated state at scrape
// time like the others.
var (
	descCoverage     = prometheus.NewDesc("lifeboat_verify_coverage_ratio", "Share of the repository's packs verified within its verification period.", []string{"repository"}, nil)
	descOverduePacks = prometheus.NewDesc("lifeboat_verify_overdue_packs", "Packs in shards not verified within the verification period.", []string{"repository"}, nil)
	descDamagedPacks = prometheus.NewDesc("lifeboat_verify_damaged_packs", "Packs whose last verification failed.", []string{"repository"}, nil)
	descPacks        = prometheus.NewDesc("lifeboat_repository_packs", "Packs in the repository's newest verification listing.", []string{"repository"}, nil)
	descDrillPassed  = prometheus.NewDesc("lifeboat_drill_last_passed", "1 if the policy's newest restore drill passed.", []string{"policy"}, nil)
	descDrillRTO     = prometheus.NewDesc("lifeboat_drill_last_rto_seconds", "Measured RTO of the policy's newest restore drill.", []string{"policy"}, nil)
	descDrillRPO     = prometheus.NewDesc("lifeboat_drill_last_rpo_seconds", "Age of the snapshot the policy's newest drill restored.", []string{"policy"}, nil)
	descDrillTime    = prometheus.NewDesc("lifeboat_drill_last_timestamp_seconds", "When the policy's newest restore drill started (Unix time).", []string{"policy"}, nil)
	descRTOTarget    = prometheus.NewDesc("lifeboat_policy_rto_target_seconds", "The policy's RTO target (0: none).", []string{"policy"}, nil)
	descPruneOK      = prometheus.NewDesc("lifeboat_prune_last_succeeded", "1 if the newest finished prune job of the policy succeeded.", []string{"policy"}, nil)
	descPruneTime    = prometheus.NewDesc("lifeboat_prune_last_success_timestamp_seconds", "When the policy's newest successful prune job finished (Unix time).", []string{"policy"}, nil)
	descPruneFreed   = prometheus.NewDesc("lifeboat_prune_last_deleted_bytes", "Bytes of packs the policy's newest successful prune deleted.", []string{"policy"}, nil)
	maintenanceDescs = []*prometheus.Desc{descCoverage, descOverduePacks, descDamagedPacks, descPacks, descDrillPassed, descDrillRTO, descDrillRPO, descDrillTime, descRTOTarget,
		descPruneOK, descPruneTime, descPruneFreed}
)

// maintenanceCollector reports verification coverage and drill results.
type maintenanceCollector struct{ a *API }

func (c *maintenanceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range maintenanceDescs {
		ch <- d
	}
}

func (c *maintenanceCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	now := c.a.clock.Now().UTC()
	type drillGauge struct {
		policy string
		target float64
		last   *DrillRecord
	}
	type pruneGauge struct {
		policy     string
		last, good *Job
	}
	var cov []CoverageReport
	var drills []drillGauge
	var prunes []pruneGauge
	c.a.node.View(func(s *State) {
		cov = s.CoverageOf(now)
		byPolicy := s.latestPrunes()
		for _, name := range sortedKeys(byPolicy) {
			g := byPolicy[name]
			l := g.last.clone() // every entry has one: it was made for a job
			c := pruneGauge{policy: name, last: &l}
			if g.good != nil {
				gd := g.good.clone()
				c.good = &gd
			}
			prunes = append(prunes, c)
		}
		latest := s.LatestDrills()
		for _, name := range s.PolicyNames() {
			dg := drillGauge{policy: name, target: time.Duration(s.Policies[name].Policy.Targets.RTO).Seconds()}
			if d := latest[name]; d != nil {
				rec := *d
				dg.last = &rec
			}
			drills = append(drills, dg)
		}
	})
	for _, r := range cov {
		gauge(descCoverage, r.Ratio, r.Repository)
		gauge(descOverduePacks, float64(r.OverduePacks), r.Repository)
		gauge(descDamagedPacks, float64(len(r.Damaged)), r.Repository)
		gauge(descPacks, float64(r.Packs), r.Repository)
	}
	for _, d := range drills {
		gauge(descRTOTarget, d.target, d.policy)
		if d.last == nil {
			continue
		}
		gauge(descDrillPassed, b2f(d.last.Passed), d.policy)
		gauge(descDrillRTO, d.last.RTOSeconds, d.policy)
		gauge(descDrillRPO, d.last.RPOSeconds, d.policy)
		gauge(descDrillTime, float64(d.last.StartedAt.Unix()), d.policy)
	}
	for _, p := range prunes {
		gauge(descPruneOK, b2f(p.last.State == JobSucceeded), p.policy)
		if p.good != nil {
			gauge(descPruneTime, float64(p.good.FinishedAt.Unix()), p.policy)
			if p.good.Result != nil && p.good.Result.Prune != nil {
				gauge(descPruneFreed, float64(p.good.Result.Prune.DeletedBytes), p.policy)
			}
		}
	}
}
