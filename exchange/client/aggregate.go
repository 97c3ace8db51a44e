package client

import (
	"context"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight/flightsql"
	"google.golang.org/grpc/metadata"
)

// Aggregate runs an aggregate query (action aggregate: counts and sums over groups,
// never rows) over Flight SQL on the exchange's Flight port, for purpose (and the case
// it serves, if any). It returns the answer as one record, which the caller releases;
// its schema's metadata carries govx.min_group_size and govx.suppression.
func (c *Client) Aggregate(ctx context.Context, sql, purpose, caseRef string) (arrow.Record, error) {
	fc, ctx, err := c.flight(ctx)
	if err != nil {
		return nil, err
	}
	// As binary headers: a plain gRPC header takes printable ASCII only, and a case
	// reference is often Chinese (and a bad one must reach the exchange to be refused by
	// name, not fail in gRPC).
	ctx = metadata.AppendToOutgoingContext(ctx, "govx-purpose-bin", purpose)
	if caseRef != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "govx-case-ref-bin", caseRef)
	}
	sc := &flightsql.Client{Client: fc, Alloc: c.mem}
	info, err := sc.Execute(ctx, sql)
	if err != nil {
		return nil, c.fromStatus(ctx, err)
	}
	rdr, err := sc.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		return nil, c.fromStatus(ctx, err)
	}
	defer rdr.Release()
	var out arrow.Record
	for rdr.Next() {
		if out != nil {
			out.Release()
		}
		out = rdr.Record()
		out.Retain()
	}
	if err := rdr.Err(); err != nil {
		if out != nil {
			out.Release()
		}
		return nil, c.fromStatus(ctx, err)
	}
	if out == nil {
		// No batch: an answer with no group still has its schema.
		b := array.NewRecordBuilder(c.mem, rdr.Schema())
		defer b.Release()
		out = b.NewRecord()
	}
	return out, nil
}
