package httpapi

import (
	"net/http"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/service"
)

// aggregate answers an aggregate query (action aggregate) on the dataset of the URL,
// which the query's FROM must name. The answer comes as a pull's does (Arrow stream,
// CSV or NDJSON by Accept), with the minimum group size and the suppression note in the
// headers Govx-Min-Group-Size and Govx-Suppression (never how many cells were
// suppressed: see service.MetaSuppression).
func (h *Handler) aggregate(w http.ResponseWriter, r *http.Request, c service.Caller) {
	ctx := r.Context()
	id := r.PathValue("id")
	b, err := h.body(w, r)
	var cmd service.AggregateCmd
	if err == nil {
		cmd, err = service.ParseAggregateCmd(b)
	}
	if err != nil {
		writeError(w, h.svc.Rejected(ctx, c, exchange.ActionAggregate, id, err))
		return
	}
	format, ctype := negotiate(r.Header.Get("Accept"))
	cmd.Dataset = id
	g, err := h.svc.OpenAggregate(ctx, c, cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	sink := &aggregateSink{httpSink{w: w, format: format, ctype: ctype, mem: h.mem}}
	_, err = h.svc.RunAggregate(ctx, g, sink)
	if cerr := sink.Flush(); err == nil {
		err = cerr
	}
	if err != nil && !sink.started {
		writeError(w, err)
		return
	}
	if err != nil {
		// The answer is one small batch: an error after its headers is the client gone.
		h.log.Info("aggregate answer cut short", "request_id", g.RequestID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// aggregateSink is an httpSink that puts the answer's suppression in headers.
type aggregateSink struct{ httpSink }

func (s *aggregateSink) Begin(schema *arrow.Schema) error {
	md := schema.Metadata()
	for key, header := range map[string]string{service.MetaSuppression: "Govx-Suppression", service.MetaMinGroupSize: "Govx-Min-Group-Size",
		exchange.MetaAgreement: "Govx-Agreement"} {
		if i := md.FindKey(key); i >= 0 {
			s.w.Header().Set(header, md.Values()[i])
		}
	}
	return s.httpSink.Begin(schema)
}
