package connectors

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a connector's Prometheus series, labelled by connector name and dataset.
type metrics struct {
	read, published, invalid, deleted, retries prometheus.Counter
	lag                                        prometheus.Gauge
	snapshotDone                               prometheus.Gauge
}

var (
	mRead = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_connector_rows_read_total",
		Help: "Native rows read from the source."}, []string{"connector", "dataset"})
	mPublished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_connector_records_published_total",
		Help: "Records (upserts and tombstones) acknowledged by Kafka."}, []string{"connector", "dataset"})
	mInvalid = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_connector_rows_invalid_total",
		Help: "Rows that failed validation and went to the dead-letter topic."}, []string{"connector", "dataset"})
	mDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_connector_tombstones_total",
		Help: "Deletes published as tombstones."}, []string{"connector", "dataset"})
	mRetries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_connector_write_retries_total",
		Help: "Chunks written again because Kafka did not acknowledge them."}, []string{"connector", "dataset"})
	mLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "govx_connector_lag_seconds",
		Help: "Seconds between now and the newest source change time acknowledged by Kafka."}, []string{"connector", "dataset"})
	mSnapshotDone = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "govx_connector_snapshot_done",
		Help: "1 once the initial snapshot is complete."}, []string{"connector", "dataset"})
)

// Collectors returns the connector metrics, for a registry served at /metrics.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{mRead, mPublished, mInvalid, mDeleted, mRetries, mLag, mSnapshotDone}
}

func newMetrics(name, dataset string) *metrics {
	l := prometheus.Labels{"connector": name, "dataset": dataset}
	return &metrics{
		read: mRead.With(l), published: mPublished.With(l), invalid: mInvalid.With(l),
		deleted: mDeleted.With(l), retries: mRetries.With(l), lag: mLag.With(l), snapshotDone: mSnapshotDone.With(l),
	}
}
